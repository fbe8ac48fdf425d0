//! What `#[mcp_tools]` emits next to its errors (thiserror's `fallback.rs`, clap's dummies): an
//! empty `ToolTable`, so that `McpTools` holds and code serving the tools
//! (`Gatekeeper::new(tools)`, `T::declared_scopes()`) adds no error of its own. The crate does
//! not compile anyway, so the empty table never runs.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemImpl;

use super::{RoleSet, expand};
use crate::paths::Paths;

/// `impl ToolTable<R> for T` with no tool, or nothing when the impl block has generics (its
/// error says so, and an impl for an unbound `T` would only add errors).
pub(crate) fn tool_table(item: &ItemImpl, roles: Option<&RoleSet>, paths: &Paths) -> TokenStream {
    if !item.generics.params.is_empty() {
        return TokenStream::new();
    }
    let self_ty = &item.self_ty;
    let roles_ty = expand::roles_type(roles, paths);
    let Paths {
        tool_table,
        tool_def,
        ..
    } = paths;
    paths.block(quote! {
        #[automatically_derived]
        impl #tool_table<#roles_ty> for #self_ty {
            type Roles = #roles_ty;

            fn tool_defs() -> ::std::vec::Vec<#tool_def<Self>> {
                ::std::vec::Vec::new()
            }
        }
    })
}
