//! DynamoDB items as this backend writes and reads them: attribute values
//! from and to Rust values, with a clear error naming the attribute when a
//! stored item is not what this code wrote.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::Blob;

use crate::storage::StorageError;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn b(v: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(v.into()))
}

fn bad(name: &str, what: &str) -> StorageError {
    StorageError::Backend(format!("stored item: attribute {name:?} {what}"))
}

/// A string attribute.
pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StorageError> {
    opt_s(item, name)?.ok_or_else(|| bad(name, "is missing"))
}

/// A string attribute that may be absent.
pub(super) fn opt_s<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, StorageError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(bad(name, "is not a string")),
    }
}

/// A number attribute that may be absent.
pub(super) fn opt_n<T: std::str::FromStr>(
    item: &Item,
    name: &str,
) -> Result<Option<T>, StorageError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| bad(name, &format!("holds {v:?}, out of range"))),
        Some(_) => Err(bad(name, "is not a number")),
    }
}

/// A number attribute.
pub(super) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StorageError> {
    opt_n(item, name)?.ok_or_else(|| bad(name, "is missing"))
}

/// A binary attribute that may be absent.
pub(super) fn opt_b<'a>(item: &'a Item, name: &str) -> Result<Option<&'a [u8]>, StorageError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::B(v)) => Ok(Some(v.as_ref())),
        Some(_) => Err(bad(name, "is not binary")),
    }
}

/// A cursor or bound from the caller as a DynamoDB number: `u64` always
/// fits (DynamoDB numbers have 38 digits).
pub(super) fn useq(v: u64) -> AttributeValue {
    n(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_read_back_and_bad_ones_are_named() {
        let mut item = Item::new();
        item.insert("a".into(), s("x"));
        item.insert("n".into(), n(u64::MAX));
        item.insert("b".into(), b(vec![1, 2]));
        assert_eq!(get_s(&item, "a"), Ok("x"));
        assert_eq!(get_n::<u64>(&item, "n"), Ok(u64::MAX));
        assert_eq!(opt_b(&item, "b"), Ok(Some(&[1u8, 2][..])));
        assert_eq!(opt_s(&item, "missing"), Ok(None));
        let err = get_n::<u32>(&item, "n").unwrap_err().to_string();
        assert!(
            err.contains("\"n\"") && err.contains("out of range"),
            "{err}"
        );
        let err = get_s(&item, "n").unwrap_err().to_string();
        assert!(err.contains("not a string"), "{err}");
        assert!(
            get_s(&item, "missing")
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }
}
