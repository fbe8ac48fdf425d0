//! `#[mcp_tools]`: reads an impl block, checks every `#[mcp_tool]` declaration, and generates
//! the tool table the runtime serves. Parse (`attr`, `item`: syntax errors only) → validate
//! (`validate`: every semantic rule) → expand (`expand`), or, on any error, the errors and a
//! fallback (`fallback`) that keeps code using the tools free of errors of its own.
//!
//! With `roles = Path`, the expansion first calls the macro `#[derive(Roles)]` declared under
//! the same name, which calls back into [`with_roles`] with the role names: that is how the
//! role literals are checked at compile time against an enum declared elsewhere.

/// Parsing `#[mcp_tools(...)]` and `#[mcp_tool(...)]`.
mod attr;
/// Descriptions from doc comments.
mod docs;
/// Code generation.
mod expand;
/// What is emitted next to errors.
mod fallback;
/// A tool method as a model.
mod item;
/// The semantic rules.
mod validate;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{
    Attribute, ImplItem, ItemImpl, LitStr, Path, Token, bracketed, parenthesized,
    parse::{Parse, ParseStream},
    spanned::Spanned,
};

use crate::{errors::Errors, paths::Paths};
use attr::{ToolArgs, ToolsArgs};

/// The roles the tools may name, learnt from the roles enum.
pub(crate) struct RoleSet {
    pub(crate) path: Path,
    pub(crate) names: Vec<String>,
    /// Whether the enum derived without errors. If not, its names may be incomplete and its
    /// `Roles` impl is a fallback: role literals are not checked and no real table is built.
    pub(crate) checked: bool,
}

/// `#[mcp_tools(...)]`.
///
/// Always emits the impl block (attributes only this macro reads removed) and `McpTools`, so
/// that on any error the only errors are the macro's own (issue 15), never one where the tools
/// are used.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let tools_args = ToolsArgs::parse(args.clone(), &mut errors);
    let paths = Paths::new(tools_args.krate.as_ref());
    let mut item_impl: ItemImpl = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            errors.push(item_head_error(
                &item,
                "`#[mcp_tools]` goes on an impl block: `#[mcp_tools] impl MyTools { ... }`",
            ));
            let errors = errors.finish().err().map(syn::Error::into_compile_error);
            return quote!(#item #errors);
        }
    };
    let mcp_tools = expand::mcp_tools_impl(&item_impl, tools_args.roles.as_ref(), &paths);
    if let Err(error) = errors.finish() {
        // The arguments themselves are wrong: no callback, no checks against the roles; an
        // empty table under the roles enum that was named, if any.
        collect_tools(
            &mut item_impl,
            tools_args.krate.as_ref(),
            &mut Errors::default(),
        );
        let roles = tools_args.roles.map(|path| RoleSet {
            path,
            names: Vec::new(),
            checked: false,
        });
        let table = fallback::tool_table(&item_impl, roles.as_ref(), &paths);
        let error = error.into_compile_error();
        return quote!(#item_impl #mcp_tools #table #error);
    }
    match tools_args.roles {
        Some(path) => {
            // The roles enum's macro calls `__mcp_tools_with_roles!` back with the role names,
            // which checks the tools and generates their table only; the impl block and
            // `McpTools` are emitted here, so they exist even if `path` has no such macro.
            let mut stripped = item_impl.clone();
            collect_tools(
                &mut stripped,
                tools_args.krate.as_ref(),
                &mut Errors::default(),
            );
            quote!(#stripped #mcp_tools #path ! { @args (#args) #item_impl })
        }
        None => {
            let table = checked_table(&mut item_impl, None, tools_args.krate.as_ref(), &paths);
            quote!(#item_impl #mcp_tools #table)
        }
    }
}

/// `__mcp_tools_with_roles! { @roles ["viewer" ...] @args (roles = Role) impl ... }`, or
/// `@invalid_roles [...]` from an enum whose derive failed.
pub(crate) fn with_roles(input: TokenStream) -> TokenStream {
    /// What the roles enum's callback passes on.
    struct Input {
        checked: bool,
        names: Vec<String>,
        args: TokenStream,
        item: ItemImpl,
    }
    impl Parse for Input {
        fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
            input.parse::<Token![@]>()?;
            let checked = input.parse::<syn::Ident>()? == "roles";
            let names;
            bracketed!(names in input);
            let mut list = Vec::new();
            while !names.is_empty() {
                list.push(names.parse::<LitStr>()?.value());
            }
            input.parse::<Token![@]>()?;
            input.parse::<syn::Ident>()?;
            let args;
            parenthesized!(args in input);
            Ok(Input {
                checked,
                names: list,
                args: args.parse()?,
                item: input.parse()?,
            })
        }
    }
    let mut input: Input = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.into_compile_error(),
    };
    // `#[mcp_tools]` reported any problem with its arguments, and then made no callback.
    let tools_args = ToolsArgs::parse(input.args, &mut Errors::default());
    let paths = Paths::new(tools_args.krate.as_ref());
    let Some(path) = tools_args.roles else {
        return TokenStream::new();
    };
    let roles = RoleSet {
        path,
        names: input.names,
        checked: input.checked,
    };
    checked_table(
        &mut input.item,
        Some(roles),
        tools_args.krate.as_ref(),
        &paths,
    )
}

/// `#[mcp_tool]` outside an `#[mcp_tools]` impl block (where it is consumed) is a mistake.
pub(crate) fn stray_tool(item: TokenStream) -> TokenStream {
    let error = item_head_error(
        &item,
        "`#[mcp_tool]` only works on a method of an impl block marked `#[mcp_tools]`\n= help: add `#[mcp_tools]` to the impl block",
    )
    .into_compile_error();
    quote!(#item #error)
}

/// An error at the head of `item` (`async fn read`, `struct Tools`): the attribute itself is
/// not available to an attribute macro, and an error at `Span::call_site()` comes with a note
/// about macro backtraces.
fn item_head_error(item: &TokenStream, message: &str) -> syn::Error {
    use proc_macro2::TokenTree;
    let mut tokens = item.clone().into_iter().peekable();
    let mut head = TokenStream::new();
    while let Some(token) = tokens.next() {
        match &token {
            // Attributes and `pub(...)` come before the head.
            TokenTree::Punct(p) if p.as_char() == '#' && head.is_empty() => {
                tokens.next_if(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == '!'));
                tokens.next();
            }
            TokenTree::Ident(i) if i == "pub" && head.is_empty() => {
                tokens.next_if(|t| matches!(t, TokenTree::Group(_)));
            }
            TokenTree::Ident(_) | TokenTree::Literal(_) => head.extend([token]),
            TokenTree::Punct(_) | TokenTree::Group(_) => break,
        }
    }
    if head.is_empty() {
        syn::Error::new(Span::call_site(), message)
    } else {
        syn::Error::new_spanned(head, message)
    }
}

/// Checks the impl block and its tools (removing the attributes only this macro reads), then
/// generates their `ToolTable`; on any error, the errors and an empty table.
fn checked_table(
    item: &mut ItemImpl,
    roles: Option<RoleSet>,
    krate: Option<&Path>,
    paths: &Paths,
) -> TokenStream {
    let mut errors = Errors::default();
    let tools = collect_tools(item, krate, &mut errors);
    validate::block(item, &tools, &mut errors);
    validate::tools(&tools, roles.as_ref(), &mut errors);
    let valid_roles = roles.as_ref().is_none_or(|set| set.checked);
    match errors.finish() {
        Ok(()) if valid_roles => expand::tool_table(item, &tools, roles.as_ref(), paths),
        // The roles enum's own error is the one to fix; its `Roles` impl is a stand-in.
        Ok(()) => fallback::tool_table(item, roles.as_ref(), paths),
        Err(error) => {
            let table = fallback::tool_table(item, roles.as_ref(), paths);
            let error = error.into_compile_error();
            quote!(#table #error)
        }
    }
}

/// Removes every `#[mcp_tool]` from the impl block and reads the tools they mark.
fn collect_tools(
    item: &mut ItemImpl,
    krate: Option<&Path>,
    errors: &mut Errors,
) -> Vec<item::ToolMethod> {
    let mut tools = Vec::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let mut tool_attrs: Vec<Attribute> = Vec::new();
        method.attrs.retain(|a| {
            let is_tool = is_tool_attribute(a, krate);
            if is_tool {
                tool_attrs.push(a.clone());
            }
            !is_tool
        });
        let Some(first) = tool_attrs.first() else {
            continue;
        };
        for extra in &tool_attrs[1..] {
            errors.push(syn::Error::new(
                extra.path().span(),
                "duplicate `#[mcp_tool]` on one method",
            ));
        }
        let args = ToolArgs::parse(first, errors);
        tools.push(item::analyze(method, first.path().span(), args, errors));
    }
    tools
}

/// `#[mcp_tool]`, `#[mcp_gatekeeper::mcp_tool]` (with or without a leading `::`), or
/// `#[<crate>::mcp_tool]` under a `crate = "..."` override.
fn is_tool_attribute(attr: &Attribute, krate: Option<&Path>) -> bool {
    let idents: Vec<String> = attr
        .path()
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let Some((last, prefix)) = idents.split_last() else {
        return false;
    };
    if last != "mcp_tool" {
        return false;
    }
    let under = |krate: &Path| {
        let names: Vec<String> = krate.segments.iter().map(|s| s.ident.to_string()).collect();
        prefix == names.as_slice()
    };
    prefix.is_empty() || prefix == ["mcp_gatekeeper"] || krate.is_some_and(under)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::TokenTree;

    /// Every identifier in `tokens`, groups included.
    fn idents(tokens: TokenStream) -> Vec<String> {
        tokens
            .into_iter()
            .flat_map(|token| match token {
                TokenTree::Ident(ident) => vec![ident.to_string()],
                TokenTree::Group(group) => idents(group.stream()),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn errors_come_with_mcp_tools_and_an_empty_table() {
        let output = attribute(
            TokenStream::new(),
            quote! {
                impl Tools {
                    #[mcp_tool(public, rate = 0)]
                    fn read(&self, #[arg(description = "Key.")] key: String) {}
                }
            },
        );
        let idents = idents(output);
        for expected in ["compile_error", "McpTools", "ToolTable"] {
            assert!(idents.iter().any(|i| i == expected), "no {expected}");
        }
        // No table entry, and no attribute only this macro understands left for rustc.
        for unexpected in ["__mcp_gatekeeper_call_read", "arg", "mcp_tool"] {
            assert!(!idents.iter().any(|i| i == unexpected), "{unexpected}");
        }
    }

    #[test]
    fn the_crate_override_replaces_every_runtime_path() {
        let item = quote! {
            impl Tools {
                #[mcp_tool(public, rate = 5)]
                async fn read(&self, key: String, caller: Caller<NoRoles>) -> String { key }
                #[mcp_tool(scope = "x")]
                fn args(&self, Args(a): Args<A>) {}
            }
        };
        for args in [
            quote!(crate = "my::gk"),
            quote!(crate = "my::gk", roles = Role),
        ] {
            let output = attribute(args, item.clone());
            assert!(!idents(output).iter().any(|i| i == "mcp_gatekeeper"));
        }
        let output = with_roles(quote! {
            @roles ["viewer"] @args (crate = "my::gk", roles = Role) #item
        });
        let idents = idents(output);
        assert!(idents.iter().any(|i| i == "ToolTable"));
        assert!(!idents.iter().any(|i| i == "mcp_gatekeeper"));
    }
}
