//! transformers' `tojson` template filter: Python's `json.dumps(x, ensure_ascii=False,
//! indent=indent, sort_keys=sort_keys)` (no HTML escaping, unlike Jinja's own `tojson`), as
//! tool-calling templates print tool definitions and arguments with it.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// How the JSON is laid out.
struct Layout {
    /// `None`: one line with `", "` and `": "`; `Some(s)`: a line an item, indented by `s` a level.
    indent: Option<String>,
    sort_keys: bool,
}

/// The filter: `value | tojson`, `tojson(indent=2)`, `tojson(sort_keys=true)`;
/// `ensure_ascii` may only be false (transformers' default).
pub(crate) fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or("").to_string()),
        Some(v) => {
            let n = i64::try_from(v).map_err(|_| bad("indent must be a number, a string or none"))?;
            Some(" ".repeat(u64::try_from(n).unwrap_or(0).min(crate::chat::MAX_TEMPLATE_PAD) as usize))
        }
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    if kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false) {
        return Err(bad("tojson(ensure_ascii=true) is not supported"));
    }
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write(value, &Layout { indent, sort_keys }, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn bad(msg: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.to_string())
}

fn write(v: &Value, layout: &Layout, level: usize, out: &mut String) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => number(v, out),
        ValueKind::String => string(v.as_str().unwrap_or(""), out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            container(out, layout, level, ('[', ']'), &items, |item, out| {
                write(item, layout, level + 1, out)
            })?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in v.try_iter()? {
                let value = v.get_item(&key)?;
                entries.push((key_text(&key)?, value));
            }
            if layout.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            container(out, layout, level, ('{', '}'), &entries, |(key, value), out| {
                string(key, out);
                out.push_str(": ");
                write(value, layout, level + 1, out)
            })?;
        }
        _ => return Err(bad(&format!("tojson: a {} is not JSON serializable", v.kind()))),
    }
    Ok(())
}

/// `items` between `open` and `close`, separated as Python separates them.
fn container<T>(
    out: &mut String,
    layout: &Layout,
    level: usize,
    (open, close): (char, char),
    items: &[T],
    mut each: impl FnMut(&T, &mut String) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        match &layout.indent {
            None if i > 0 => out.push_str(", "),
            None => {}
            Some(unit) => {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                out.push_str(&unit.repeat(level + 1));
            }
        }
        each(item, out)?;
    }
    if let Some(unit) = &layout.indent {
        out.push('\n');
        out.push_str(&unit.repeat(level));
    }
    out.push(close);
    Ok(())
}

/// A key as Python's `json.dumps` writes it: strings as they are, numbers, booleans and none as
/// their JSON text.
fn key_text(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or("").to_string()),
        ValueKind::Number | ValueKind::Bool | ValueKind::None => {
            let mut s = String::new();
            write(key, &Layout { indent: None, sort_keys: false }, 0, &mut s)?;
            Ok(s)
        }
        other => Err(bad(&format!("tojson: keys must be strings, not a {other}"))),
    }
}

/// An integer as its digits, a float as Python's `repr` (shortest round trip, `1.0`, `1e+20`,
/// `1.5e-05`, `NaN`, `Infinity`).
fn number(v: &Value, out: &mut String) {
    if v.is_integer() {
        out.push_str(&v.to_string());
        return;
    }
    let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(&python_float(f));
    }
}

/// Python's `repr(f)` of a finite float: positional when the decimal exponent is from -4 to 15,
/// else scientific with a signed exponent of at least two digits.
fn python_float(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = f.to_string();
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

/// A JSON string as Python writes it with `ensure_ascii=False`: `"` and `\` escaped, control
/// characters as `\n`-style or `\u00XX` escapes, everything else as it is.
fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
