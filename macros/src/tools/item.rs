//! A `#[mcp_tool]` method as a typed model: receiver, parameters (JSON arguments or
//! extractors), return type, docs.

use proc_macro2::Span;
use syn::{
    FnArg, GenericArgument, Ident, ImplItemFn, LitStr, Pat, PathArguments, ReturnType, Type,
    spanned::Spanned,
};

use super::{attr::ToolArgs, docs};
use crate::errors::Errors;

/// How a parameter gets its value.
pub(crate) enum ParamKind {
    /// A JSON argument named `name`, described by `description`.
    Json {
        name: String,
        description: Option<String>,
    },
    /// Filled by `FromToolCall` (`Caller<R>`, `Granted<M>`, or a `#[extract]` parameter).
    Extractor,
    /// `Args<T>`: all arguments as one struct (also an extractor).
    ArgsStruct { inner: Type },
}

/// One parameter of a tool method.
pub(crate) struct Param {
    pub(crate) ty: Type,
    /// The pattern: a JSON argument's must be a plain name, which becomes the argument's name.
    pub(crate) pat: Pat,
    pub(crate) kind: ParamKind,
}

/// How a tool method takes `self`.
pub(crate) enum Receiver {
    /// `&self`, the only form a tool can have.
    Shared,
    /// `self`, `&mut self`, `self: Box<Self>`...: the receiver as written.
    Other(syn::Receiver),
    /// No receiver; the span of the method's name.
    Missing(Span),
}

/// A `#[mcp_tool]` method as written, before any check.
pub(crate) struct ToolMethod {
    pub(crate) ident: Ident,
    pub(crate) is_async: bool,
    pub(crate) attr_span: Span,
    pub(crate) args: ToolArgs,
    pub(crate) description: Option<String>,
    pub(crate) receiver: Receiver,
    /// The method's generics, if it has any (or a `where` clause).
    pub(crate) generics: Option<syn::Generics>,
    /// Where a `...` parameter is.
    pub(crate) variadic: Option<Span>,
    pub(crate) params: Vec<Param>,
    /// The declared return type, `None` for `()`.
    pub(crate) output: Option<Type>,
}

impl ToolMethod {
    /// The tool's name: `name = "..."`, else the method's name.
    pub(crate) fn tool_name(&self) -> (String, Span) {
        match &self.args.name {
            Some(name) => (name.value.clone(), name.span),
            None => (self.ident.unraw_string(), self.ident.span()),
        }
    }
}

/// An identifier as a JSON or tool name spells it.
trait UnrawString {
    /// The name without `r#`.
    fn unraw_string(&self) -> String;
}

impl UnrawString for Ident {
    fn unraw_string(&self) -> String {
        let s = self.to_string();
        s.strip_prefix("r#").map_or(s.clone(), str::to_owned)
    }
}

/// Reads a tool method and strips the attributes only this macro understands (`#[arg]`,
/// `#[extract]`) so rustc never sees them. Only a malformed `#[arg]` is an error here; what the
/// method must look like is checked by `validate`.
pub(crate) fn analyze(
    method: &mut ImplItemFn,
    attr_span: Span,
    args: ToolArgs,
    errors: &mut Errors,
) -> ToolMethod {
    let sig = &mut method.sig;
    let generics = (!sig.generics.params.is_empty() || sig.generics.where_clause.is_some())
        .then(|| sig.generics.clone());
    let variadic = sig.variadic.as_ref().map(Spanned::span);
    let receiver = match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {
            Receiver::Shared
        }
        Some(FnArg::Receiver(r)) => Receiver::Other(r.clone()),
        _ => Receiver::Missing(sig.ident.span()),
    };
    let docs = docs::parse(&method.attrs);
    let mut params = Vec::new();
    for input in sig.inputs.iter_mut() {
        let FnArg::Typed(typed) = input else { continue };
        let mut description = None;
        let mut extract = false;
        let mut kept = Vec::new();
        for attr in typed.attrs.drain(..) {
            if attr.path().is_ident("arg") {
                errors.take(attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("description") {
                        description = Some(meta.value()?.parse::<LitStr>()?.value());
                        Ok(())
                    } else {
                        Err(meta
                            .error("unknown `#[arg]` argument; expected `description = \"...\"`"))
                    }
                }));
            } else if attr.path().is_ident("extract") {
                extract = true;
            } else {
                kept.push(attr);
            }
        }
        typed.attrs = kept;
        let ty = (*typed.ty).clone();
        let kind = if let Some(inner) = args_struct_inner(&ty) {
            ParamKind::ArgsStruct { inner }
        } else if extract || is_extractor(&ty) {
            ParamKind::Extractor
        } else {
            let name = match &*typed.pat {
                Pat::Ident(p) if p.subpat.is_none() => p.ident.unraw_string(),
                _ => String::new(),
            };
            let description = description.or_else(|| {
                docs.arguments
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, d)| d.clone())
            });
            ParamKind::Json { name, description }
        };
        params.push(Param {
            ty,
            pat: (*typed.pat).clone(),
            kind,
        });
    }
    let output = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };
    ToolMethod {
        ident: sig.ident.clone(),
        is_async: sig.asyncness.is_some(),
        attr_span,
        args,
        description: docs.description,
        receiver,
        generics,
        variadic,
        params,
        output,
    }
}

/// The last segment of a plain path type (`Granted` in `mcp_gatekeeper::Granted<M>`).
pub(crate) fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

/// The built-in extractors; any other extractor needs `#[extract]` on its parameter.
const EXTRACTORS: &[&str] = &["Caller", "Granted", "CancellationToken"];

/// Whether `ty` is a built-in extractor, by name (design decision 6).
fn is_extractor(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| EXTRACTORS.iter().any(|e| s.ident == e))
}

/// Whether `ty` is `Granted<...>`.
pub(crate) fn is_granted(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Granted")
}

/// `T` of `Args<T>`.
fn args_struct_inner(ty: &Type) -> Option<Type> {
    let segment = last_segment(ty)?;
    if segment.ident != "Args" {
        return None;
    }
    match &segment.arguments {
        PathArguments::AngleBracketed(a) if a.args.len() == 1 => match a.args.first() {
            Some(GenericArgument::Type(inner)) => Some(inner.clone()),
            _ => None,
        },
        _ => None,
    }
}
