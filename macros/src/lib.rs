//! Implementation detail of `mcp-gatekeeper`: the `#[mcp_tools]`, `#[mcp_tool]` and
//! `#[derive(Roles)]` macros. Depend on `mcp-gatekeeper`, which re-exports them with their
//! documentation; this crate's API is not stable on its own.

/// Accumulating the errors of one invocation.
mod errors;
/// The runtime paths generated code names, and the `crate = "..."` override.
mod paths;
/// `#[derive(Roles)]`.
mod roles;
/// Rates, tool names and scope tokens.
mod rules;
/// Did-you-mean suggestions.
mod suggest;
/// `#[mcp_tools]` and `#[mcp_tool]`.
mod tools;

use proc_macro::TokenStream;

/// See `mcp_gatekeeper::mcp_tools`.
#[proc_macro_attribute]
pub fn mcp_tools(args: TokenStream, item: TokenStream) -> TokenStream {
    debug_expansion("mcp_tools", tools::attribute(args.into(), item.into())).into()
}

/// See `mcp_gatekeeper::mcp_tool`.
#[proc_macro_attribute]
pub fn mcp_tool(_args: TokenStream, item: TokenStream) -> TokenStream {
    tools::stray_tool(item.into()).into()
}

/// See `mcp_gatekeeper::Roles`.
#[proc_macro_derive(Roles, attributes(role, roles))]
pub fn derive_roles(input: TokenStream) -> TokenStream {
    debug_expansion("Roles", roles::derive(input.into())).into()
}

/// The second half of `#[mcp_tools(roles = ...)]`, called back by the roles enum's macro.
#[doc(hidden)]
#[proc_macro]
pub fn __mcp_tools_with_roles(input: TokenStream) -> TokenStream {
    debug_expansion("mcp_tools", tools::with_roles(input.into())).into()
}

/// `MCP_GATEKEEPER_MACROS_DEBUG=1` prints every expansion to stderr.
fn debug_expansion(name: &str, tokens: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    if std::env::var_os("MCP_GATEKEEPER_MACROS_DEBUG").is_some() {
        eprintln!("// #[{name}] expansion\n{tokens}");
    }
    tokens
}
