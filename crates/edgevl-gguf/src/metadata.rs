//! Ordered key/value metadata with typed getters.

use std::collections::HashMap;

use crate::{Array, GgufError, Value};

/// GGUF metadata: key/value pairs in file order, with lookup by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// An empty metadata set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `key`; if it is already present, returns the value back as `Err` and changes nothing.
    pub fn insert_new(&mut self, key: String, value: Value) -> Result<(), (String, Value)> {
        if self.index.contains_key(&key) {
            return Err((key, value));
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Sets `key`, replacing an existing value in place (keeping its position) or appending.
    pub fn set(&mut self, key: String, value: Value) {
        match self.index.get(&key) {
            Some(&i) => {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.1 = value;
                }
            }
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// Removes `key`, returning its value; the other keys keep their order.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, value) = self.entries.remove(i);
        for j in self.index.values_mut().filter(|j| **j > i) {
            *j -= 1;
        }
        Some(value)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).and_then(|&i| self.entries.get(i)).map(|(_, v)| v)
    }

    /// All pairs in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`, or [`GgufError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            Value::Str(s) => Ok(s),
            other => Err(wrong_type(key, "str", other)),
        }
    }

    /// An integer value of any width that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_int(key, "u32")
    }

    /// An integer value of any width that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_int(key, "u64")
    }

    /// An integer value of any width that fits in `i64`.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.get_int(key, "i64")
    }

    /// A float value (`f32`, or `f64` rounded to `f32`).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match self.require(key)? {
            Value::F32(v) => Ok(*v),
            Value::F64(v) => Ok(*v as f32),
            other => Err(wrong_type(key, "f32", other)),
        }
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            Value::Bool(v) => Ok(*v),
            other => Err(wrong_type(key, "bool", other)),
        }
    }

    /// An array of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            other => Err(wrong_type(key, "array", other)),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.require(key)? {
            Value::Array(Array::Str(v)) => Ok(v),
            other => Err(wrong_type(key, "array<str>", other)),
        }
    }

    /// An array of `f32`.
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32], GgufError> {
        match self.require(key)? {
            Value::Array(Array::F32(v)) => Ok(v),
            other => Err(wrong_type(key, "array<f32>", other)),
        }
    }

    /// An array of `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<&[i32], GgufError> {
        match self.require(key)? {
            Value::Array(Array::I32(v)) => Ok(v),
            other => Err(wrong_type(key, "array<i32>", other)),
        }
    }

    /// Like [`get_u32`](Self::get_u32), but `Ok(None)` when the key is missing.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        optional(self.get_u32(key))
    }

    /// Like [`get_u64`](Self::get_u64), but `Ok(None)` when the key is missing.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        optional(self.get_u64(key))
    }

    /// Like [`get_f32`](Self::get_f32), but `Ok(None)` when the key is missing.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        optional(self.get_f32(key))
    }

    /// Like [`get_bool`](Self::get_bool), but `Ok(None)` when the key is missing.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        optional(self.get_bool(key))
    }

    /// Like [`get_str`](Self::get_str), but `Ok(None)` when the key is missing.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        optional(self.get_str(key))
    }

    /// An integer of any width converted to `T` if it fits.
    fn get_int<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let value = self.require(key)?;
        let Some(n) = value.as_integer() else {
            return Err(wrong_type(key, expected, value));
        };
        T::try_from(n).map_err(|_| GgufError::WrongType {
            key: key.to_string(),
            expected,
            found: format!("{} with value {n} (out of range)", value.type_name()),
        })
    }
}

/// The `WrongType` error for `key`.
fn wrong_type(key: &str, expected: &'static str, found: &Value) -> GgufError {
    GgufError::WrongType { key: key.to_string(), expected, found: found.type_name() }
}

/// Turns `MissingKey` into `Ok(None)`.
fn optional<T>(r: Result<T, GgufError>) -> Result<Option<T>, GgufError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(GgufError::MissingKey(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md() -> Metadata {
        let mut m = Metadata::new();
        for (k, v) in [
            ("u8", Value::U8(7)),
            ("neg", Value::I32(-1)),
            ("big", Value::U64(1 << 40)),
            ("f64", Value::F64(0.5)),
            ("s", Value::Str("x".into())),
            ("toks", Value::Array(Array::U32(vec![1, 2]))),
        ] {
            assert!(m.insert_new(k.into(), v).is_ok());
        }
        m
    }

    #[test]
    fn integer_getters_accept_any_fitting_integer() {
        let m = md();
        assert_eq!(m.get_u32("u8").ok(), Some(7));
        assert_eq!(m.get_i64("neg").ok(), Some(-1));
        assert_eq!(m.get_u64("big").ok(), Some(1 << 40));
        assert!(matches!(m.get_u32("neg"), Err(GgufError::WrongType { .. })));
        assert!(matches!(m.get_u32("big"), Err(GgufError::WrongType { .. })));
        assert!(matches!(m.get_u32("s"), Err(GgufError::WrongType { .. })));
        assert_eq!(m.get_f32("f64").ok(), Some(0.5));
    }

    #[test]
    fn missing_and_optional() {
        let m = md();
        assert!(matches!(m.get_str("nope"), Err(GgufError::MissingKey(k)) if k == "nope"));
        assert_eq!(m.opt_u32("nope").ok(), Some(None));
        assert_eq!(m.opt_str("s").ok(), Some(Some("x")));
        assert!(m.opt_bool("s").is_err());
        let e = m.get_str_array("toks").err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("metadata key 'toks' has type array<u32>, expected array<str>"));
    }

    #[test]
    fn insert_new_refuses_duplicates_and_set_replaces_in_place() {
        let mut m = md();
        assert!(m.insert_new("s".into(), Value::Bool(true)).is_err());
        m.set("u8".into(), Value::U8(9));
        assert_eq!(m.iter().next().map(|(k, _)| k), Some("u8"));
        assert_eq!(m.get_u32("u8").ok(), Some(9));
        assert_eq!(m.len(), 6);
    }
}
