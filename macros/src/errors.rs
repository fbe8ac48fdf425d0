//! Collecting every error of one macro invocation, so the user sees all of them in one build.

/// An accumulator of `syn::Error`s (serde's `Ctxt`, without the drop bomb).
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records `error` after the others.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records the error of `result`, if any, and returns its value.
    pub(crate) fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// All the recorded errors as one, if any.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// An error whose message carries a rustc-style help or note line under the first line.
pub(crate) fn with_hint(
    span: proc_macro2::Span,
    message: impl std::fmt::Display,
    hint: Option<String>,
) -> syn::Error {
    match hint {
        Some(hint) => syn::Error::new(span, format!("{message}\n= {hint}")),
        None => syn::Error::new(span, message.to_string()),
    }
}

impl Errors {
    /// Whether no error was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}
