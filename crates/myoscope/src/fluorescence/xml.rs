//! A small, forgiving XML reader for TIFF ImageDescription tags.
//!
//! Vendor descriptions are not always well-formed: inForm and Vectra declare `utf-16` but store
//! ASCII, some writers truncate the tag or leave elements unclosed. We only need element names,
//! attributes and text, so this reader never fails: a stray end tag is ignored, an unclosed
//! element is closed at its parent's end or at the end of input, and a tag cut off by the end of
//! the input is dropped. Comments, processing instructions and DOCTYPEs are skipped; CDATA is
//! text. No namespaces (a `ome:Channel` element is named `ome:Channel`; [`Element::local_name`]
//! strips the prefix).

/// One element with its attributes, direct text and child elements.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    /// Text directly inside this element (not its children's), entities decoded, untrimmed.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The name without a namespace prefix (`ome:Channel` → `Channel`).
    pub fn local_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    fn is(&self, name: &str) -> bool {
        self.local_name().eq_ignore_ascii_case(name)
    }

    /// The first direct child called `name` (ASCII case-insensitive, prefix ignored).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(name))
    }

    /// Trimmed text of the first direct child called `name`, if that text is not empty.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name)
            .map(|c| c.text.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// An attribute's value (ASCII case-insensitive name).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every element called `name` below this one, in document order.
    pub fn descendants<'a>(&'a self, name: &str) -> Vec<&'a Element> {
        let mut found = Vec::new();
        let mut stack: Vec<&Element> = self.children.iter().rev().collect();
        while let Some(e) = stack.pop() {
            if e.is(name) {
                found.push(e);
            }
            stack.extend(e.children.iter().rev());
        }
        found
    }
}

/// The first top-level element of `text`, or `None` when there is no element at all.
pub fn parse(text: &str) -> Option<Element> {
    // A synthetic document node collects top-level elements; the stack holds open elements.
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut rest = text;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut stack, rest);
            break;
        };
        push_text(&mut stack, &rest[..lt]);
        rest = &rest[lt..];
        if let Some(body) = rest.strip_prefix("<!--") {
            rest = skip_past(body, "-->");
        } else if let Some(body) = rest.strip_prefix("<![CDATA[") {
            let end = body.find("]]>").unwrap_or(body.len());
            if let Some(top) = stack.last_mut() {
                top.text.push_str(&body[..end]);
            }
            rest = skip_past(body, "]]>");
        } else if rest.starts_with("<?") {
            rest = skip_past(&rest[2..], "?>");
        } else if rest.starts_with("<!") {
            rest = skip_past(&rest[2..], ">");
        } else if let Some(body) = rest.strip_prefix("</") {
            let Some(gt) = body.find('>') else { break };
            close(&mut stack, body[..gt].trim());
            rest = &body[gt + 1..];
        } else if !rest[1..].starts_with(|c: char| c.is_alphabetic() || c == '_' || c == ':') {
            // A bare `<` in text (`a < b`) is not markup.
            push_text(&mut stack, "<");
            rest = &rest[1..];
        } else {
            let Some(gt) = find_tag_end(&rest[1..]) else {
                break;
            };
            let inner = &rest[1..1 + gt];
            rest = &rest[2 + gt..];
            let (inner, self_closing) = match inner.strip_suffix('/') {
                Some(s) => (s, true),
                None => (inner, false),
            };
            let (name, attributes) = split_start_tag(inner);
            let element = Element {
                name,
                attributes,
                ..Element::default()
            };
            if self_closing {
                if let Some(top) = stack.last_mut() {
                    top.children.push(element);
                }
            } else {
                stack.push(element);
            }
        }
    }
    while stack.len() > 1 {
        let done = stack.pop().unwrap_or_default();
        if let Some(parent) = stack.last_mut() {
            parent.children.push(done);
        }
    }
    stack.pop().and_then(|doc| doc.children.into_iter().next())
}

fn push_text(stack: &mut [Element], raw: &str) {
    if raw.is_empty() {
        return;
    }
    if let Some(top) = stack.last_mut() {
        top.text.push_str(&decode_entities(raw));
    }
}

fn skip_past<'a>(s: &'a str, end: &str) -> &'a str {
    match s.find(end) {
        Some(i) => &s[i + end.len()..],
        None => "",
    }
}

/// Closes the innermost open element called `name` and every element opened inside it; an end
/// tag that matches nothing open is ignored.
fn close(stack: &mut Vec<Element>, name: &str) {
    let Some(pos) = stack.iter().skip(1).rposition(|e| e.name == name) else {
        return;
    };
    let target = pos + 1;
    while stack.len() > target {
        let done = stack.pop().unwrap_or_default();
        if let Some(parent) = stack.last_mut() {
            parent.children.push(done);
        }
    }
}

/// Index of the `>` that ends a start tag, skipping `>` inside quoted attribute values.
fn find_tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, '<') => return None, // an unterminated tag followed by another one
            _ => {}
        }
    }
    None
}

fn split_start_tag(inner: &str) -> (String, Vec<(String, String)>) {
    let inner = inner.trim();
    let name_end = inner
        .find(|c: char| c.is_whitespace())
        .unwrap_or(inner.len());
    let name = inner[..name_end].to_string();
    let mut attributes = Vec::new();
    let mut rest = inner[name_end..].trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = rest[..key_end].to_string();
        rest = rest[key_end..].trim_start();
        let value = if let Some(after_eq) = rest.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            match after_eq.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &after_eq[1..];
                    let end = body.find(q).unwrap_or(body.len());
                    rest = body.get(end + 1..).unwrap_or("");
                    decode_entities(&body[..end])
                }
                _ => {
                    let end = after_eq
                        .find(|c: char| c.is_whitespace())
                        .unwrap_or(after_eq.len());
                    rest = &after_eq[end..];
                    decode_entities(&after_eq[..end])
                }
            }
        } else {
            String::new()
        };
        if !key.is_empty() {
            attributes.push((key, value));
        }
        rest = rest.trim_start();
    }
    (name, attributes)
}

/// Decodes the five predefined entities and numeric references; anything else is kept as is.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let semi = rest.find(';').filter(|&i| i <= 12);
        let decoded = semi.and_then(|i| {
            let entity = &rest[1..i];
            let c = match entity {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let code = if let Some(hex) = entity
                        .strip_prefix("#x")
                        .or_else(|| entity.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        entity.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    code.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, i))
        });
        match decoded {
            Some((c, i)) => {
                out.push(c);
                rest = &rest[i + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_text_and_attributes() {
        let xml = r#"<?xml version="1.0" encoding="utf-16"?>
<!-- comment <Name>no</Name> -->
<Root a="1" b='x &amp; y'>
  <Name>DAPI</Name>
  <Empty />
  <Nested><Name>inner</Name></Nested>
  <Text>a &lt; b &#65;&#x42;</Text>
</Root>"#;
        let root = parse(xml).unwrap();
        assert_eq!(root.name, "Root");
        assert_eq!(root.attribute("A"), Some("1"));
        assert_eq!(root.attribute("b"), Some("x & y"));
        assert_eq!(root.child_text("name").as_deref(), Some("DAPI"));
        assert_eq!(root.child_text("Empty"), None);
        assert_eq!(root.child_text("Text").as_deref(), Some("a < b AB"));
        let names: Vec<_> = root
            .descendants("Name")
            .iter()
            .map(|e| e.text.clone())
            .collect();
        assert_eq!(names, ["DAPI", "inner"]);
    }

    #[test]
    fn tolerates_broken_documents() {
        // Unclosed elements, a stray end tag, a tag cut off at the end.
        let root = parse("<A><B>one<C>two</B></X><D>three</D><E attr=\"x").unwrap();
        assert_eq!(root.name, "A");
        let b = root.child("B").unwrap();
        assert_eq!(b.text, "one");
        assert_eq!(b.child_text("C").as_deref(), Some("two"));
        assert_eq!(root.child_text("D").as_deref(), Some("three"));
        assert!(parse("no markup at all").is_none());
        assert!(parse("").is_none());
        assert!(parse("<").is_none());
        // Unknown entities and a lone ampersand survive as text.
        let r = parse("<R>&nbsp; & co, 1 < 2 <> 3</R>").unwrap();
        assert_eq!(r.text, "&nbsp; & co, 1 < 2 <> 3");
        // CDATA is text; a `>` inside a quoted attribute does not end the tag.
        let r = parse("<R k=\"a>b\"><![CDATA[<x>]]></R>").unwrap();
        assert_eq!(r.attribute("k"), Some("a>b"));
        assert_eq!(r.text, "<x>");
    }

    #[test]
    fn prefixes_are_ignored_when_matching() {
        let r = parse(r#"<ome:OME><ome:Channel Name="DAPI"/><ome:Channel Name="CD3"/></ome:OME>"#)
            .unwrap();
        assert_eq!(r.local_name(), "OME");
        let n: Vec<_> = r
            .descendants("Channel")
            .iter()
            .filter_map(|c| c.attribute("Name"))
            .collect();
        assert_eq!(n, ["DAPI", "CD3"]);
    }
}
