//! The identity provider of the `oidc` and `introspect` modes: a discovery document, a key set
//! and an introspection endpoint, served by this process on an ephemeral loopback port (on a
//! thread of their own, so that the benchmarked server's runtime serves only the benchmark).
//! After start-up the server under test asks nothing of it: the key is cached, and so is the
//! introspection answer (for a minute, longer than a run; `Oidc`'s default).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Form, Json, Router,
    extract::State,
    routing::{get, post},
};
use jsonwebtoken::{DecodingKey, jwk::Jwk};
use serde_json::{Value, json};

/// The `kid` of the provider's one key.
pub(crate) const KID: &str = "bench-key";
/// The client the server introspects as.
pub(crate) const CLIENT_ID: &str = "bench-server";
/// Its secret.
pub(crate) const CLIENT_SECRET: &str = "bench-server-introspection-secret";

struct Provider {
    issuer: String,
    jwks: Value,
    /// The one opaque token it knows, and its audience.
    opaque: Option<(String, String)>,
}

/// Serves the provider: the P-256 `public_key_pem` as its key set (empty: none), and the
/// `opaque` token (with its audience) as active at its introspection endpoint. Returns the
/// issuer.
pub(crate) async fn serve(
    public_key_pem: &[u8],
    opaque: Option<(&str, &str)>,
) -> Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let issuer = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let keys = if public_key_pem.is_empty() {
        Vec::new()
    } else {
        let key = DecodingKey::from_ec_pem(public_key_pem).map_err(|e| e.to_string())?;
        let mut jwk =
            serde_json::to_value(Jwk::from_decoding_key(&key, None).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        jwk["kid"] = json!(KID);
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        vec![jwk]
    };
    let provider = Arc::new(Provider {
        issuer: issuer.clone(),
        jwks: json!({ "keys": keys }),
        opaque: opaque.map(|(t, a)| (t.to_owned(), a.to_owned())),
    });
    let router = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/introspect", post(introspect))
        .with_state(provider);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the identity provider");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, router).await;
        });
    });
    Ok(issuer)
}

async fn discovery(State(provider): State<Arc<Provider>>) -> Json<Value> {
    let mut document = json!({
        "issuer": provider.issuer,
        "introspection_endpoint": format!("{}/introspect", provider.issuer),
    });
    // A provider of opaque tokens only publishes no key set.
    if provider.jwks["keys"]
        .as_array()
        .is_some_and(|k| !k.is_empty())
    {
        document["jwks_uri"] = json!(format!("{}/jwks", provider.issuer));
    }
    Json(document)
}

async fn jwks(State(provider): State<Arc<Provider>>) -> Json<Value> {
    Json(provider.jwks.clone())
}

/// Active for the one token (the client's credentials are not checked: this provider only
/// serves the benchmark), inactive for anything else.
async fn introspect(
    State(provider): State<Arc<Provider>>,
    Form(form): Form<HashMap<String, String>>,
) -> Json<Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match (&provider.opaque, form.get("token")) {
        (Some((token, audience)), Some(asked)) if token == asked => Json(json!({
            "active": true,
            "sub": "bench-client",
            "aud": audience,
            "iss": provider.issuer,
            "role": "viewer",
            "exp": now + 86_400,
        })),
        _ => Json(json!({ "active": false })),
    }
}
