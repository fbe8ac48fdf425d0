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

pub(crate) struct Param {
    pub(crate) ty: Type,
    pub(crate) kind: ParamKind,
}

pub(crate) struct ToolMethod {
    pub(crate) ident: Ident,
    pub(crate) is_async: bool,
    pub(crate) attr_span: Span,
    pub(crate) args: ToolArgs,
    pub(crate) description: Option<String>,
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

trait UnrawString {
    fn unraw_string(&self) -> String;
}

impl UnrawString for Ident {
    fn unraw_string(&self) -> String {
        let s = self.to_string();
        s.strip_prefix("r#").map_or(s.clone(), str::to_owned)
    }
}

/// Reads a tool method, strips the attributes only this macro understands (`#[arg]`,
/// `#[extract]`) so rustc never sees them, and records every problem in `errors`.
pub(crate) fn analyze(
    method: &mut ImplItemFn,
    attr_span: Span,
    args: ToolArgs,
    errors: &mut Errors,
) -> ToolMethod {
    let sig = &mut method.sig;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a tool method cannot be generic: its arguments and result need one concrete schema",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new(
            variadic.span(),
            "a tool cannot be variadic",
        ));
    }
    check_receiver(sig, errors);
    let docs = docs::parse(&method.attrs);
    let mut params = Vec::new();
    let mut args_struct_span = None;
    let mut json_span = None;
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
            if args_struct_span.replace(ty.span()).is_some() {
                errors.push(syn::Error::new_spanned(
                    &ty,
                    "a tool takes at most one `Args<T>` parameter",
                ));
            }
            check_object_type(&inner, errors);
            ParamKind::ArgsStruct { inner }
        } else if extract || is_extractor(&ty) {
            if args.role.is_none() && !args.has_errors && is_granted(&ty) {
                let (tool, fix) = if args.public.is_some() {
                    ("a `public` tool", "replace `public` with")
                } else {
                    ("a tool without `role = \"...\"`", "add")
                };
                errors.push(syn::Error::new_spanned(
                    &ty,
                    format!(
                        "{tool} checks no role, so it cannot take `Granted<...>`\n= help: {fix} `role = \"...\"` of a role that includes this one, or remove the parameter"
                    ),
                ));
            }
            ParamKind::Extractor
        } else {
            let name = match &*typed.pat {
                Pat::Ident(p) if p.subpat.is_none() => p.ident.unraw_string(),
                other => {
                    errors.push(syn::Error::new_spanned(
                        other,
                        "a tool argument must be a plain name (`key: String`): its name is the JSON argument's name",
                    ));
                    String::new()
                }
            };
            json_span.get_or_insert(ty.span());
            let description = description.or_else(|| {
                docs.arguments
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, d)| d.clone())
            });
            ParamKind::Json { name, description }
        };
        params.push(Param { ty, kind });
    }
    if let (Some(args), Some(_)) = (args_struct_span, json_span) {
        errors.push(syn::Error::new(
            args,
            "a tool takes either plain arguments or one `Args<T>`, not both",
        ));
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
        params,
        output,
    }
}

fn check_receiver(sig: &syn::Signature, errors: &mut Errors) {
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(FnArg::Receiver(r)) => errors.push(syn::Error::new_spanned(
            r,
            "a tool method takes `&self`: tools run concurrently, so they cannot take `self` or `&mut self`",
        )),
        _ => errors.push(syn::Error::new(
            sig.ident.span(),
            "a tool method takes `&self` as its first parameter",
        )),
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

/// The built-in extractors; any other extractor needs `#[extract]` on its parameter.
const EXTRACTORS: &[&str] = &["Caller", "Granted", "CancellationToken"];

fn is_extractor(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| EXTRACTORS.iter().any(|e| s.ident == e))
}

fn is_granted(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Granted")
}

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

/// `Args<T>` must be a JSON object. Types that are certainly not (numbers, strings, sequences,
/// tuples, `Option`) are refused here, at the type; the rest is checked when the server is
/// built, from the real schema.
fn check_object_type(inner: &Type, errors: &mut Errors) {
    const NOT_OBJECTS: &[&str] = &[
        "bool", "char", "str", "String", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16",
        "i32", "i64", "i128", "isize", "f32", "f64", "Vec", "VecDeque", "HashSet", "BTreeSet",
        "Option", "Box", "Cow",
    ];
    let not_object = match inner {
        Type::Tuple(_) | Type::Array(_) | Type::Slice(_) | Type::Reference(_) => true,
        _ => last_segment(inner).is_some_and(|s| NOT_OBJECTS.iter().any(|n| s.ident == n)),
    };
    if not_object {
        errors.push(syn::Error::new_spanned(
            inner,
            "`Args<T>` needs a struct with named fields: a tool's arguments are a JSON object\n= help: declare a struct with one field per argument, or take the arguments as plain parameters",
        ));
    }
}
