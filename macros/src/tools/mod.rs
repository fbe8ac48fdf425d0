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
            let error = syn::Error::new(
                Span::call_site(),
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
            // Ask the roles enum for its names; it calls `__mcp_tools_with_roles!` back.
            quote!(#path ! { @args (#args) #item_impl })
        }
        Ok(ToolsArgs { roles: None }) => expand_checked(item_impl, None),
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
    )
}

/// `#[mcp_tool]` outside an `#[mcp_tools]` impl block (where it is consumed) is a mistake.
pub(crate) fn stray_tool(item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        Span::call_site(),
        "`#[mcp_tool]` only works on a method of an impl block marked `#[mcp_tools]`",
    )
    .into_compile_error();
    quote!(#item #error)
}

fn expand_checked(mut item: ItemImpl, roles: Option<RoleSet>) -> TokenStream {
    let mut errors = Errors::default();
    let tools = collect_tools(&mut item, &mut errors);
    if let Some((_, trait_path, _)) = &item.trait_ {
        errors.push(syn::Error::new(
            trait_path.span(),
            "`#[mcp_tools]` goes on an inherent impl block (`impl MyTools`), not a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        errors.push(syn::Error::new(
            item.generics.span(),
            "`#[mcp_tools]` does not support generic impl blocks",
        ));
    }
    if tools.is_empty() && errors.is_empty() {
        errors.push(syn::Error::new(
            item.impl_token.span,
            "this `#[mcp_tools]` impl block declares no tool: mark methods with `#[mcp_tool(...)]`",
        ));
    }
    expand::check(&tools, roles.as_ref(), &mut errors);
    match errors.finish() {
        Ok(()) => {
            let generated = expand::generate(&item, &tools, roles.as_ref());
            quote!(#item #generated)
        }
        Err(error) => {
            let error = error.into_compile_error();
            quote!(#item #error)
        }
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
