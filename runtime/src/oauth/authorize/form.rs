//! Reading the url-encoded forms of the login and consent pages (including the repeated
//! `scope` checkboxes, which a struct-based form extractor cannot read).

/// A decoded form body.
pub(super) struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Decodes `application/x-www-form-urlencoded` (bytes that are not UTF-8 are replaced, so
    /// they can never match an expected value).
    pub(super) fn parse(body: &[u8]) -> Self {
        Self {
            fields: url::form_urlencoded::parse(body)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        }
    }

    /// The value of a field that must appear exactly once; `None` when it is missing or
    /// repeated (a repeated CSRF token or decision is never honoured).
    pub(super) fn one(&self, name: &str) -> Option<&str> {
        let mut values = self.all(name);
        let value = values.next()?;
        values.next().is_none().then_some(value)
    }

    /// Every value of a repeatable field.
    pub(super) fn all<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_repeated_fields() {
        let form = Form::parse(b"request=r1&scope=a&scope=b%3Ac&csrf=x&csrf=y&decision=approve");
        assert_eq!(form.one("request"), Some("r1"));
        assert_eq!(form.one("decision"), Some("approve"));
        assert_eq!(form.one("csrf"), None, "repeated");
        assert_eq!(form.one("missing"), None);
        assert_eq!(form.all("scope").collect::<Vec<_>>(), ["a", "b:c"]);
    }
}
