//! Plain tool parameters (`key: String, limit: Option<u32>`): their joint input schema, built
//! once per tool, and their extraction from a call's arguments object.

use std::sync::Arc;

use rmcp::model::JsonObject;
use schemars::{SchemaGenerator, generate::SchemaSettings};
use serde_json::Value;

use crate::tools::{Rejection, ToolArgument, ToolCall};

/// The `inputSchema` of a tool with plain parameters: an object with one property per
/// parameter, required unless the parameter's type accepts `null` (`Option<T>`), and no other
/// properties.
pub struct ObjectSchema {
    generator: SchemaGenerator,
    properties: JsonObject,
    required: Vec<Value>,
}

impl Default for ObjectSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectSchema {
    /// An object schema without properties.
    pub fn new() -> Self {
        Self {
            generator: SchemaSettings::draft2020_12().into_generator(),
            properties: JsonObject::new(),
            required: Vec::new(),
        }
    }

    /// Adds parameter `name` of type `T`.
    pub fn property<T: ToolArgument>(&mut self, name: &str, description: Option<&str>) {
        let mut schema = self.generator.subschema_for::<T>();
        if let Some(description) = description {
            schema.insert("description".into(), description.into());
        }
        self.properties.insert(name.into(), schema.to_value());
        if !accepts_null::<T>() {
            self.required.push(name.into());
        }
    }

    /// The finished schema.
    pub fn build(mut self) -> Result<Arc<JsonObject>, String> {
        let mut root = JsonObject::new();
        root.insert(
            "$schema".into(),
            "https://json-schema.org/draft/2020-12/schema".into(),
        );
        root.insert("type".into(), "object".into());
        root.insert("properties".into(), Value::Object(self.properties));
        if !self.required.is_empty() {
            root.insert("required".into(), Value::Array(self.required));
        }
        root.insert("additionalProperties".into(), false.into());
        let definitions = self.generator.take_definitions(true);
        if !definitions.is_empty() {
            root.insert("$defs".into(), Value::Object(definitions));
        }
        Ok(Arc::new(root))
    }
}

/// Whether a missing argument of type `T` is acceptable (it deserialises from `null`).
fn accepts_null<T: ToolArgument>() -> bool {
    T::deserialize(Value::Null).is_ok()
}

/// The arguments object of one call, taken apart parameter by parameter.
pub struct Arguments {
    remaining: JsonObject,
}

impl Arguments {
    /// Takes the arguments out of the call.
    pub fn new(call: &mut ToolCall<'_>) -> Self {
        Self {
            remaining: call.arguments.take().unwrap_or_default(),
        }
    }

    /// Removes and deserialises argument `name`. A missing argument is `null` to its type, so
    /// `Option<T>` parameters may be left out and others may not.
    pub fn take<T: ToolArgument>(&mut self, name: &str) -> Result<T, Rejection> {
        match self.remaining.remove(name) {
            Some(value) => serde_json::from_value(value)
                .map_err(|e| Rejection::invalid_arguments(format!("argument `{name}`: {e}"))),
            None => T::deserialize(Value::Null).map_err(|_| {
                Rejection::invalid_arguments(format!("missing required argument `{name}`"))
            }),
        }
    }

    /// Refuses arguments the tool does not declare: a misspelt optional argument must not be
    /// silently ignored.
    pub fn finish(self) -> Result<(), Rejection> {
        match self.remaining.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(Rejection::invalid_arguments(format!(
                "unknown argument `{unknown}`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_required_and_optional_properties() {
        let mut schema = ObjectSchema::new();
        schema.property::<String>("key", Some("The key"));
        schema.property::<Option<u32>>("limit", None);
        let schema = schema.build().unwrap();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["key"]["type"], "string");
        assert_eq!(schema["properties"]["key"]["description"], "The key");
        assert_eq!(schema["required"], serde_json::json!(["key"]));
        assert_eq!(schema["additionalProperties"], false);
    }
}
