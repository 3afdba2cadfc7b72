//! Finding the line and column of a field of `models.yaml`, for messages.

use super::shape::Shape;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One step of a path into the YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    /// The value of a mapping key (its first occurrence).
    Key(String),
    /// The value of the second occurrence of a duplicated key.
    Second(String),
    /// A list item.
    Index(usize),
}

pub(super) fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// Finds where a field is in the text. serde_yaml does not expose node positions, but it does
/// attach the position of the current node to errors: so we walk the document along the path
/// and fail on purpose at the target, then read the error's location.
pub(super) struct Locator<'a> {
    pub(super) text: &'a str,
    pub(super) shape: Shape,
}

const PROBE: &str = "clarity-config-locate-probe";

impl Locator<'_> {
    /// Line and column of `models[model].<field>`, or of its nearest present ancestor.
    pub(super) fn nearest(&self, model: usize, field: &[Seg]) -> Option<(usize, usize)> {
        let mut path = match self.shape {
            Shape::List => vec![],
            Shape::Mapping => vec![key("models")],
        };
        path.push(Seg::Index(model));
        let base = path.len();
        path.extend_from_slice(field);
        while path.len() >= base {
            if let Some(found) = self.locate(&path) {
                return Some(found);
            }
            path.pop();
        }
        None
    }

    pub(super) fn locate(&self, path: &[Seg]) -> Option<(usize, usize)> {
        let de = serde_yaml::Deserializer::from_str(self.text);
        match (Find { path }).deserialize(de) {
            Ok(()) => None,
            Err(err) if err.to_string().contains(PROBE) => {
                err.location().map(|l| (l.line(), l.column()))
            }
            Err(_) => None,
        }
    }
}

/// Walks to `path` and fails there.
struct Find<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.path.split_first() {
            None => deserializer.deserialize_any(Stop),
            Some((seg, rest)) => deserializer.deserialize_any(Walk { seg, rest }),
        }
    }
}

/// Rejects whatever it is given, so the deserializer reports the node's position.
struct Stop;

impl<'de> Visitor<'de> for Stop {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PROBE)
    }
}

/// Descends into the child named by `seg`, skipping everything else.
struct Walk<'p> {
    seg: &'p Seg,
    rest: &'p [Seg],
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0;
        while let Some(k) = map.next_key::<serde_yaml::Value>()? {
            let wanted = match (self.seg, k.as_str()) {
                (Seg::Key(want), Some(k)) if want == k => {
                    seen += 1;
                    seen == 1
                }
                (Seg::Second(want), Some(k)) if want == k => {
                    seen += 1;
                    seen == 2
                }
                _ => false,
            };
            if wanted {
                map.next_value_seed(Find { path: self.rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let more = match self.seg {
                Seg::Index(want) if *want == index => {
                    seq.next_element_seed(Find { path: self.rest })?.is_some()
                }
                _ => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(IgnoredAny).map(|_| ())
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(IgnoredAny).map(|_| ())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        IgnoredAny.visit_enum(data).map(|_| ())
    }
}
