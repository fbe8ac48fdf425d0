//! The one table of runtime paths the expansions name (Rocket's `define_exported_paths!`), and
//! the `crate = "..."` override that moves all of them under another path.
//!
//! Every path goes through `__private`, so the runtime can reorganise its public modules without
//! breaking generated code, and a crate that re-exports `mcp_gatekeeper` under another name
//! (`crate = "my_facade::gatekeeper"`) changes one prefix instead of every path. Generated items
//! sit in `const _: () = { ... };` blocks that start with [`Paths::import`] (serde's
//! `use ... as _serde;`): a `crate` path that does not resolve is then one error at the literal,
//! and every use of the failed import is silent.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::{LitStr, Path, meta::ParseNestedMeta};

/// What generated code calls `__private` inside its blocks.
const ALIAS: &str = "__mcp_gatekeeper";

/// Declares [`Paths`] with one field per runtime item, all under one prefix.
macro_rules! runtime_paths {
    ($($(#[$doc:meta])* $field:ident => $name:ident,)*) => {
        /// The runtime paths of one expansion, built once from the crate path.
        pub(crate) struct Paths {
            /// `use <crate>::__private as <alias>;`, at the top of every generated block.
            import: TokenStream,
            $($(#[$doc])* pub(crate) $field: TokenStream,)*
        }

        impl Paths {
            /// Every path under `private`, the name `import` gives the runtime.
            fn under(import: TokenStream, private: &TokenStream) -> Self {
                Self { import, $($field: quote!(#private::$name),)* }
            }
        }
    };
}

runtime_paths! {
    /// The trait `Gatekeeper::new` needs.
    mcp_tools => McpTools,
    /// The table behind `McpTools`, implemented by whichever expansion knows the role names.
    tool_table => ToolTable,
    tool_def => ToolDef,
    tool_hints => ToolHints,
    tool_call => ToolCall,
    server_info => ServerInfo,
    rate => Rate,
    into_tool_result => IntoToolResult,
    from_tool_call => FromToolCall,
    arguments => Arguments,
    args => Args,
    object_schema => ObjectSchema,
    json_object => JsonObject,
    input_schema => input_schema,
    assert_argument => assert_argument,
    call_tool_response => CallToolResponse,
    error_data => ErrorData,
    box_future => BoxFuture,
    /// The roles of tools declared without `roles = ...`.
    no_roles => NoRoles,
    no_role_guard => NoRoleGuard,
    roles => Roles,
    role_marker => RoleMarker,
    role_at => RoleAt,
    guard => Guard,
    includes => Includes,
}

impl Paths {
    /// The paths under `krate` (`crate = "..."`), or under `::mcp_gatekeeper`.
    pub(crate) fn new(krate: Option<&Path>) -> Self {
        let alias = Ident::new(ALIAS, Span::call_site());
        let private = private_path(krate);
        let import = quote! {
            #[allow(unused_imports)]
            use #private as #alias;
        };
        Self::under(import, &alias.into_token_stream())
    }

    /// `items` in an anonymous const block that imports the runtime: out of the user's
    /// namespace, and with one place where a wrong `crate` path fails.
    pub(crate) fn block(&self, items: TokenStream) -> TokenStream {
        let import = &self.import;
        quote!(const _: () = { #import #items };)
    }

    /// The proc macro a roles enum's callback hands its role names to. A full path: the
    /// callback is a `macro_rules!` expanded where the tools are, outside any block of ours.
    pub(crate) fn with_roles(krate: Option<&Path>) -> TokenStream {
        let private = private_path(krate);
        quote!(#private::__mcp_tools_with_roles)
    }
}

/// `<crate>::__private`. Under an override every token is shown at the `crate` literal, so
/// that an error about the path points there.
fn private_path(krate: Option<&Path>) -> TokenStream {
    match krate {
        Some(path) => {
            let span = path
                .segments
                .first()
                .map_or_else(Span::call_site, |s| s.ident.span());
            located_at(&quote!(#path::__private), span)
        }
        None => quote!(::mcp_gatekeeper::__private),
    }
}

/// `tokens` shown at `span`: each token keeps its own hygiene (so a path resolves exactly as
/// before) but an error about it points at the user's token, not at the attribute.
pub(crate) fn located_at(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut moved = Group::new(group.delimiter(), located_at(&group.stream(), span));
                moved.set_span(group.span().located_at(span));
                TokenTree::Group(moved)
            }
            mut other => {
                other.set_span(other.span().located_at(span));
                other
            }
        })
        .collect()
}

/// Reads the value of `crate = "path::to::mcp_gatekeeper"` in `#[attribute(...)]`.
///
/// A string, as serde and tokio take it: the path is then spanned at the literal, so a path
/// that does not resolve is reported there.
pub(crate) fn parse_crate(meta: &ParseNestedMeta<'_>, attribute: &str) -> syn::Result<Path> {
    /// What a valid value looks like, for the messages.
    const EXAMPLE: &str = "crate = \"my_facade::gatekeeper\"";
    let grammar = || {
        syn::Error::new(
            meta.path.segments[0].ident.span(),
            format!(
                "expected `{EXAMPLE}` in `#[{attribute}]`: the path under which `mcp_gatekeeper` is re-exported"
            ),
        )
    };
    if !meta.input.peek(syn::Token![=]) {
        return Err(grammar());
    }
    let value = meta.value()?;
    let lit: LitStr = match value.parse::<syn::Lit>() {
        Ok(syn::Lit::Str(lit)) => lit,
        Ok(other) => return Err(not_a_string(&other, EXAMPLE)),
        Err(_) => {
            // An unquoted path (`crate = my_facade::gatekeeper`): consume it to point at all of it.
            let tokens: TokenStream = value
                .step(|cursor| {
                    let mut rest = *cursor;
                    let mut tokens = TokenStream::new();
                    while let Some((tt, next)) = rest.token_tree() {
                        if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                            break;
                        }
                        tokens.extend([tt]);
                        rest = next;
                    }
                    Ok((tokens, rest))
                })
                .unwrap_or_default();
            let error = match tokens.is_empty() {
                true => grammar(),
                // A path's tokens print with spaces around `::`, which a path never needs.
                false => not_a_string(
                    &tokens,
                    &format!("crate = \"{}\"", tokens.to_string().replace(' ', "")),
                ),
            };
            return Err(error);
        }
    };
    lit.parse_with(Path::parse_mod_style).map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "`crate = {:?}` is not a path\n= help: name the path under which `mcp_gatekeeper` is re-exported: `{EXAMPLE}`",
                lit.value()
            ),
        )
    })
}

/// The value must be quoted: an error at `value`, showing the quoted form.
fn not_a_string(value: &impl ToTokens, example: &str) -> syn::Error {
    syn::Error::new_spanned(value, format!("expected a string literal: `{example}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(attr: syn::Attribute) -> syn::Result<Path> {
        let mut found = None;
        attr.parse_nested_meta(|meta| {
            found = Some(parse_crate(&meta, "mcp_tools")?);
            Ok(())
        })?;
        Ok(found.unwrap())
    }

    #[test]
    fn crate_paths() {
        let path = parse(syn::parse_quote!(#[mcp_tools(crate = "my_facade::gatekeeper")])).unwrap();
        assert_eq!(quote!(#path).to_string(), "my_facade :: gatekeeper");
        let path = parse(syn::parse_quote!(#[mcp_tools(crate = "::gk")])).unwrap();
        assert_eq!(quote!(#path).to_string(), ":: gk");
    }

    #[test]
    fn malformed_crate_values() {
        for (attr, message) in [
            (
                syn::parse_quote!(#[mcp_tools(crate = "")]),
                "`crate = \"\"` is not a path",
            ),
            (
                syn::parse_quote!(#[mcp_tools(crate = "a b")]),
                "`crate = \"a b\"` is not a path",
            ),
            (
                syn::parse_quote!(#[mcp_tools(crate = "a::<T>")]),
                "is not a path",
            ),
            (
                syn::parse_quote!(#[mcp_tools(crate = 42)]),
                "expected a string literal",
            ),
            (
                syn::parse_quote!(#[mcp_tools(crate = my::gk)]),
                "expected a string literal: `crate = \"my::gk\"`",
            ),
            (syn::parse_quote!(#[mcp_tools(crate)]), "expected `crate = "),
        ] {
            let error = parse(attr).unwrap_err().to_string();
            assert!(error.contains(message), "{error}");
        }
    }

    #[test]
    fn every_path_goes_through_the_import() {
        let krate: Path = syn::parse_quote!(my_facade::gatekeeper);
        let paths = Paths::new(Some(&krate));
        assert_eq!(paths.mcp_tools.to_string(), "__mcp_gatekeeper :: McpTools");
        let block = paths.block(TokenStream::new()).to_string();
        assert!(
            block.contains("use my_facade :: gatekeeper :: __private as __mcp_gatekeeper ;"),
            "{block}"
        );
        assert_eq!(
            Paths::with_roles(None).to_string(),
            ":: mcp_gatekeeper :: __private :: __mcp_tools_with_roles"
        );
    }
}
