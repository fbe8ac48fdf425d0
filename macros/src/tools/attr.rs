//! Parsing `#[mcp_tools(...)]` and `#[mcp_tool(...)]` arguments into typed models.

use proc_macro2::Span;
use syn::{
    Expr, ExprLit, ExprUnary, Lit, LitBool, LitStr, Path, UnOp, meta::ParseNestedMeta,
    spanned::Spanned,
};

use crate::{
    errors::{Errors, with_hint},
    rules::{self, RateSpec},
    suggest,
};

/// `#[mcp_tools(roles = Role)]`.
#[derive(Default)]
pub(crate) struct ToolsArgs {
    pub(crate) roles: Option<Path>,
}

const TOOLS_KEYS: &[&str] = &["roles"];

impl ToolsArgs {
    pub(crate) fn parse(tokens: proc_macro2::TokenStream) -> syn::Result<Self> {
        let mut args = ToolsArgs::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("roles") {
                if args.roles.is_some() {
                    return Err(meta.error("duplicate `roles`"));
                }
                args.roles = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(unknown_key(&meta, "#[mcp_tools]", TOOLS_KEYS))
            }
        });
        syn::parse::Parser::parse2(parser, tokens)?;
        Ok(args)
    }
}

/// A string value and where it was written.
#[derive(Clone)]
pub(crate) struct Located<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// Everything `#[mcp_tool(...)]` can say about one tool.
#[derive(Default)]
pub(crate) struct ToolArgs {
    pub(crate) role: Option<Located<String>>,
    pub(crate) scopes: Vec<Located<String>>,
    pub(crate) public: Option<Span>,
    pub(crate) rate: Option<RateSpec>,
    pub(crate) name: Option<Located<String>>,
    pub(crate) title: Option<String>,
    pub(crate) read_only: Option<bool>,
    pub(crate) destructive: Option<bool>,
    pub(crate) idempotent: Option<bool>,
    pub(crate) open_world: Option<bool>,
    /// The attribute had an error, so what it declares is incomplete: checks of the whole
    /// declaration (such as "no access rule") would only repeat that error.
    pub(crate) has_errors: bool,
}

pub(crate) const TOOL_KEYS: &[&str] = &[
    "role",
    "scope",
    "public",
    "rate",
    "name",
    "title",
    "read_only",
    "destructive",
    "idempotent",
    "open_world",
];

impl ToolArgs {
    /// Parses the attribute, recording every problem in `errors` (so all of them show at once).
    pub(crate) fn parse(attr: &syn::Attribute, all_errors: &mut Errors) -> Self {
        let mut args = ToolArgs::default();
        if matches!(attr.meta, syn::Meta::Path(_)) {
            return args;
        }
        let mut errors = Errors::default();
        let errors = &mut errors;
        let result = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            match key.as_str() {
                "role" => {
                    let lit = string_value(&meta, "role = \"admin\"")?;
                    set_once(&mut args.role, spanned(&lit), &meta)
                }
                "scope" => {
                    let lit = string_value(&meta, "scope = \"data:write\"")?;
                    args.scopes.extend(split_scopes(&lit, errors));
                    Ok(())
                }
                "public" => {
                    if meta.input.peek(syn::Token![=]) {
                        return Err(
                            meta.error("`public` takes no value: write `#[mcp_tool(public)]`")
                        );
                    }
                    set_once(&mut args.public, meta.path.span(), &meta)
                }
                "rate" => {
                    let rate = rate_value(&meta)?;
                    set_once(&mut args.rate, rate, &meta)
                }
                "name" => {
                    let lit = string_value(&meta, "name = \"read-data\"")?;
                    if let Err(message) = rules::check_tool_name(&lit.value()) {
                        errors.push(syn::Error::new(lit.span(), message));
                    }
                    set_once(&mut args.name, spanned(&lit), &meta)
                }
                "title" => {
                    let lit = string_value(&meta, "title = \"Read data\"")?;
                    set_once(&mut args.title, lit.value(), &meta)
                }
                "read_only" => flag(&meta, &mut args.read_only),
                "destructive" => flag(&meta, &mut args.destructive),
                "idempotent" => flag(&meta, &mut args.idempotent),
                "open_world" => flag(&meta, &mut args.open_world),
                _ => Err(unknown_key(&meta, "#[mcp_tool]", TOOL_KEYS)),
            }
        });
        errors.take(result);
        if let Err(error) = std::mem::take(errors).finish() {
            args.has_errors = true;
            all_errors.push(error);
        }
        args
    }
}

fn spanned(lit: &LitStr) -> Located<String> {
    Located {
        value: lit.value(),
        span: lit.span(),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if slot.is_some() {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(syn::Error::new(
            meta.path.span(),
            format!("duplicate `#[mcp_tool]` argument `{key}`"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

fn string_value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new(
            other.span(),
            format!("expected a string literal: `{example}`"),
        )),
    }
}

/// `scope = "a b"` declares two scopes, as OAuth's space-separated `scope` parameter does.
fn split_scopes(lit: &LitStr, errors: &mut Errors) -> Vec<Located<String>> {
    let text = lit.value();
    if text.trim().is_empty() {
        errors.push(syn::Error::new(
            lit.span(),
            "empty scope: name at least one scope",
        ));
        return Vec::new();
    }
    text.split(' ')
        .filter(|s| !s.is_empty())
        .filter_map(|scope| match rules::check_scope(scope) {
            Ok(()) => Some(Located {
                value: scope.to_owned(),
                span: lit.span(),
            }),
            Err(message) => {
                errors.push(syn::Error::new(lit.span(), message));
                None
            }
        })
        .collect()
}

fn rate_value(meta: &ParseNestedMeta<'_>) -> syn::Result<RateSpec> {
    let expr: Expr = meta.value()?.parse()?;
    let (result, span) = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => {
            if !lit.suffix().is_empty() {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("invalid rate `{lit}`: write the number without a type suffix"),
                ));
            }
            (rules::parse_rate_int(lit.base10_digits()), lit.span())
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => (rules::parse_rate_str(&lit.value()), lit.span()),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: operand,
            ..
        }) => {
            let shown = match &**operand {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(lit), ..
                }) => format!(" `-{lit}`"),
                _ => String::new(),
            };
            return Err(syn::Error::new_spanned(
                &expr,
                format!("rate{shown} must be a positive number of calls"),
            ));
        }
        other => {
            return Err(syn::Error::new_spanned(other, rules::RATE_GRAMMAR));
        }
    };
    result.map_err(|message| syn::Error::new(span, message))
}

/// `read_only` or `read_only = true|false`.
fn flag(meta: &ParseNestedMeta<'_>, slot: &mut Option<bool>) -> syn::Result<()> {
    let value = if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<LitBool>()?.value
    } else {
        true
    };
    set_once(slot, value, meta)
}

fn unknown_key(meta: &ParseNestedMeta<'_>, attribute: &str, known: &[&str]) -> syn::Error {
    let key = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| {
            let path = &meta.path;
            quote::quote!(#path).to_string().replace(' ', "")
        });
    with_hint(
        meta.path.span(),
        format!("unknown `{attribute}` argument `{key}`"),
        suggest::hint(&key, known, "accepted arguments"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn parse(attr: syn::Attribute) -> (ToolArgs, syn::Result<()>) {
        let mut errors = Errors::default();
        let args = ToolArgs::parse(&attr, &mut errors);
        (args, errors.finish())
    }

    #[test]
    fn all_keys() {
        let (args, result) = parse(parse_quote!(#[mcp_tool(
            role = "admin", scope = "a b", scope = "c", rate = "5/s", name = "n", title = "T",
            read_only, destructive = false
        )]));
        assert!(result.is_ok() && !args.has_errors);
        assert_eq!(args.role.map(|r| r.value).as_deref(), Some("admin"));
        assert_eq!(args.scopes.len(), 3);
        assert_eq!(args.rate.map(|r| (r.calls, r.per_secs)), Some((5, 1)));
        assert_eq!(
            (args.read_only, args.destructive),
            (Some(true), Some(false))
        );
    }

    #[test]
    fn errors_mark_the_declaration_incomplete() {
        for attr in [
            parse_quote!(#[mcp_tool(rol = "admin")]),
            parse_quote!(#[mcp_tool(scope = "")]),
            parse_quote!(#[mcp_tool(public = true)]),
            parse_quote!(#[mcp_tool(role = "a", role = "b")]),
        ] {
            let (args, result) = parse(attr);
            assert!(args.has_errors && result.is_err());
        }
        let (_, result) = parse(parse_quote!(#[mcp_tool(role = "a", role = "b")]));
        let message = result.unwrap_err().to_string();
        assert_eq!(message, "duplicate `#[mcp_tool]` argument `role`");
    }

    #[test]
    fn rate_forms_and_errors() {
        let (_, result) = parse(parse_quote!(#[mcp_tool(public, rate = -5)]));
        let message = result.unwrap_err().to_string();
        assert_eq!(message, "rate `-5` must be a positive number of calls");
        let (args, _) = parse(parse_quote!(#[mcp_tool(public, rate = 10)]));
        assert_eq!(args.rate.map(|r| (r.calls, r.per_secs)), Some((10, 60)));
    }
}
