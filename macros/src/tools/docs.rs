//! Tool and argument descriptions from doc comments.

use syn::{Attribute, Expr, ExprLit, Lit, Meta};

/// A method's doc comment, split into the tool description and the argument descriptions of
/// its `# Arguments` section.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Docs {
    pub(crate) description: Option<String>,
    pub(crate) arguments: Vec<(String, String)>,
}

/// The text of every `///` line (`#[doc = "..."]`) of `attrs`.
pub(crate) fn doc_lines(attrs: &[Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        // An empty `///` line is `""`, which has no `lines()` but separates paragraphs.
        .flat_map(|text| match text.as_str() {
            "" => vec![String::new()],
            _ => text.lines().map(str::to_owned).collect(),
        })
        .collect()
}

/// Joins doc lines: paragraphs kept, lines of a paragraph joined by spaces.
pub(crate) fn join_paragraphs(lines: &[String]) -> Option<String> {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line);
        }
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    (!paragraphs.is_empty()).then(|| paragraphs.join("\n\n"))
}

/// Reads the doc comment in `attrs`.
pub(crate) fn parse(attrs: &[Attribute]) -> Docs {
    let lines = doc_lines(attrs);
    let heading = |l: &str| l.trim_start().starts_with('#');
    let arguments_at = lines.iter().position(|l| {
        let t = l.trim();
        t.starts_with('#')
            && t.trim_start_matches('#')
                .trim()
                .eq_ignore_ascii_case("arguments")
    });
    let Some(start) = arguments_at else {
        return Docs {
            description: join_paragraphs(&lines),
            arguments: Vec::new(),
        };
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| heading(l))
        .map_or(lines.len(), |i| start + 1 + i);
    let mut kept = lines[..start].to_vec();
    kept.extend_from_slice(&lines[end..]);
    Docs {
        description: join_paragraphs(&kept),
        arguments: argument_items(&lines[start + 1..end]),
    }
}

/// `* `key` - text`, `- key: text` and continuation lines.
fn argument_items(lines: &[String]) -> Vec<(String, String)> {
    let mut items: Vec<(String, String)> = Vec::new();
    for line in lines {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("* ").or_else(|| t.strip_prefix("- ")) {
            let rest = rest.trim();
            let (name, text) = match rest.strip_prefix('`') {
                Some(after) => match after.split_once('`') {
                    Some((name, text)) => (name, text),
                    None => continue,
                },
                None => rest.split_once([' ', ':']).unwrap_or((rest, "")),
            };
            let text = text
                .trim_start()
                .trim_start_matches([':', '-', '—', '–'])
                .trim();
            items.push((name.trim().to_owned(), text.to_owned()));
        } else if let Some(last) = items.last_mut()
            && !t.is_empty()
        {
            last.1.push(' ');
            last.1.push_str(t);
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn arguments_section_is_split_out() {
        let f: syn::ItemFn = parse_quote! {
            /// Read a value.
            /// Second line.
            ///
            /// # Arguments
            /// * `key` - The key
            ///   to read.
            /// - limit: At most this many.
            ///
            /// # Notes
            /// Fast.
            fn f() {}
        };
        let docs = parse(&f.attrs);
        assert_eq!(
            docs.description.as_deref(),
            Some("Read a value. Second line.\n\n# Notes Fast.")
        );
        assert_eq!(
            docs.arguments,
            vec![
                ("key".to_owned(), "The key to read.".to_owned()),
                ("limit".to_owned(), "At most this many.".to_owned()),
            ]
        );
    }

    #[test]
    fn no_docs_no_description() {
        let f: syn::ItemFn = parse_quote!(
            fn f() {}
        );
        assert_eq!(parse(&f.attrs), Docs::default());
    }
}
