//! `#[mcp_tools]`: reads an impl block, checks every `#[mcp_tool]` declaration, and generates
//! the tool table the runtime serves.
//!
//! With `roles = Path`, the expansion first calls the macro `#[derive(Roles)]` declared under
//! the same name, which calls back into [`with_roles`] with the role names: that is how the
//! role literals are checked at compile time against an enum declared elsewhere.

mod attr;
mod docs;
mod expand;
mod item;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{
    Attribute, ImplItem, ItemImpl, LitStr, Path, Token, bracketed, parenthesized,
    parse::{Parse, ParseStream},
    spanned::Spanned,
};

use crate::errors::Errors;
use attr::{ToolArgs, ToolsArgs};

/// The roles the tools may name, learnt from the roles enum.
pub(crate) struct RoleSet {
    pub(crate) path: Path,
    pub(crate) names: Vec<String>,
}

/// `#[mcp_tools(...)]`.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed = ToolsArgs::parse(args.clone());
    let mut item_impl: ItemImpl = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let error = item_head_error(
                &item,
                "`#[mcp_tools]` goes on an impl block: `#[mcp_tools] impl MyTools { ... }`",
            );
            let error = error.into_compile_error();
            return quote!(#item #error);
        }
    };
    match parsed {
        Err(error) => {
            strip_tool_attributes(&mut item_impl);
            let error = error.into_compile_error();
            quote!(#item_impl #error)
        }
        Ok(ToolsArgs { roles: Some(path) }) => {
            // The impl block itself is emitted here, so it survives even if `path` does not
            // name a roles enum (one error, no "method not found" cascade). The roles enum's
            // macro then calls `__mcp_tools_with_roles!` back with the names, which checks the
            // tools and generates the table only.
            let mut stripped = item_impl.clone();
            collect_tools(&mut stripped, &mut Errors::default());
            quote!(#stripped #path ! { @args (#args) #item_impl })
        }
        Ok(ToolsArgs { roles: None }) => expand_checked(item_impl, None, true),
    }
}

/// `__mcp_tools_with_roles! { @roles ["viewer" ...] @args (roles = Role) impl ... }`.
pub(crate) fn with_roles(input: TokenStream) -> TokenStream {
    struct Input {
        names: Vec<String>,
        args: TokenStream,
        item: ItemImpl,
    }
    impl Parse for Input {
        fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
            input.parse::<Token![@]>()?;
            input.parse::<syn::Ident>()?;
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
                names: list,
                args: args.parse()?,
                item: input.parse()?,
            })
        }
    }
    let input: Input = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.into_compile_error(),
    };
    let path = ToolsArgs::parse(input.args)
        .ok()
        .and_then(|a| a.roles)
        .unwrap_or_else(|| syn::parse_quote!(::mcp_gatekeeper::NoRoles));
    expand_checked(
        input.item,
        Some(RoleSet {
            path,
            names: input.names,
        }),
        false,
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

/// Checks the tools and generates their table; with `emit_item`, also the (stripped) impl block.
fn expand_checked(mut item: ItemImpl, roles: Option<RoleSet>, emit_item: bool) -> TokenStream {
    let mut errors = Errors::default();
    let tools = collect_tools(&mut item, &mut errors);
    if let Some((_, trait_path, _)) = &item.trait_ {
        errors.push(syn::Error::new_spanned(
            trait_path,
            "`#[mcp_tools]` goes on an inherent impl block (`impl MyTools`), not a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "`#[mcp_tools]` does not support generic impl blocks",
        ));
    }
    if tools.is_empty() && errors.is_empty() {
        errors.push(syn::Error::new(
            item.impl_token.span,
            "this `#[mcp_tools]` impl block declares no tool\n= help: mark each tool method with `#[mcp_tool(...)]`",
        ));
    }
    expand::check(&tools, roles.as_ref(), &mut errors);
    let output = match errors.finish() {
        Ok(()) => expand::generate(&item, &tools, roles.as_ref()),
        Err(error) => error.into_compile_error(),
    };
    match emit_item {
        true => quote!(#item #output),
        false => output,
    }
}

/// Removes every `#[mcp_tool]` from the impl block and reads the tools they mark.
fn collect_tools(item: &mut ItemImpl, errors: &mut Errors) -> Vec<item::ToolMethod> {
    let mut tools = Vec::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let mut tool_attrs: Vec<Attribute> = Vec::new();
        method.attrs.retain(|a| {
            let is_tool = is_tool_attribute(a);
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

fn strip_tool_attributes(item: &mut ItemImpl) {
    for impl_item in &mut item.items {
        if let ImplItem::Fn(method) = impl_item {
            method.attrs.retain(|a| !is_tool_attribute(a));
        }
    }
}

/// `#[mcp_tool]`, `#[mcp_gatekeeper::mcp_tool]` or `#[::mcp_gatekeeper::mcp_tool]`.
fn is_tool_attribute(attr: &Attribute) -> bool {
    let segments = &attr.path().segments;
    match segments.len() {
        1 => segments[0].ident == "mcp_tool",
        2 => segments[0].ident == "mcp_gatekeeper" && segments[1].ident == "mcp_tool",
        _ => false,
    }
}
