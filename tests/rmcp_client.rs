//! The official Rust MCP client (rmcp's Streamable HTTP client transport) against the rbac
//! example, stateful and stateless.

use rmcp::{
    ServiceExt,
    model::CallToolRequestParams,
    service::ServiceError,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::json;

use crate::common::*;

async fn client(url: &str, token: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(token);
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    ().serve(transport).await.expect("the client connects")
}

fn call(name: &'static str, arguments: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name).with_arguments(arguments.as_object().unwrap().clone())
}

#[tokio::test]
async fn the_rmcp_client_sees_and_calls_what_its_role_allows() {
    for stateless in [false, true] {
        let server = start_rbac(stateless).await;

        let editor = client(&server.url, &jwt("editor-1", "editor")).await;
        let mut names: Vec<String> = editor
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["read-data", "write-data"]);
        let written = editor
            .call_tool(call("write-data", json!({ "key": "a", "value": "1" })))
            .await
            .unwrap();
        assert_eq!(
            written.structured_content.unwrap()["written_by"],
            "editor-1"
        );
        let read = editor
            .call_tool(call("read-data", json!({ "key": "a" })))
            .await
            .unwrap();
        assert_eq!(read.is_error, Some(false));
        match editor
            .call_tool(call("delete-data", json!({ "key": "a" })))
            .await
        {
            Err(ServiceError::McpError(error)) => {
                assert_eq!(error.code.0, -32003);
                assert!(
                    error.message.contains("requires role `admin`"),
                    "{}",
                    error.message
                );
            }
            other => panic!("expected a forbidden error, got {other:?}"),
        }
        editor.cancel().await.unwrap();

        // The API key as a bearer token works through the same client.
        let admin = client(&server.url, ADMIN_KEY).await;
        assert_eq!(admin.list_all_tools().await.unwrap().len(), 4);
        let deleted = admin
            .call_tool(call("delete-data", json!({ "key": "a" })))
            .await
            .unwrap();
        assert_eq!(deleted.is_error, Some(false));
        admin.cancel().await.unwrap();
        server.stop().await;
    }
}

#[tokio::test]
async fn the_rmcp_client_is_refused_with_a_bad_token() {
    let server = start_rbac(false).await;
    let config = StreamableHttpClientTransportConfig::with_uri(server.url.as_str())
        .auth_header("not-a-valid-key-1234");
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    assert!(().serve(transport).await.is_err());
    server.stop().await;
}
