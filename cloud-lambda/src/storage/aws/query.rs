//! Query pagination. DynamoDB ends a query's last page in one of two ways:
//! without a `LastEvaluatedKey`, or with one followed by an empty page
//! (real DynamoDB may do the latter when a page exactly fills `Limit`;
//! moto never does). [`Paging`] is the pure state of a paged query and
//! handles both, and also an empty page that still carries a key; the
//! query runner feeds it real pages.

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

use super::StoreInner;
use super::errors::sdk_error;
use super::items::Item;
use crate::storage::StorageError;

/// Where a paged query stands.
#[derive(Debug)]
pub(super) struct Paging {
    /// Stop after this many items (`None`: all of them).
    wanted: Option<usize>,
    /// Items per page asked for (`None`: DynamoDB's 1 MB pages).
    page_size: Option<i32>,
    /// The key to start the next page from.
    next: Option<Item>,
    started: bool,
    items: Vec<Item>,
}

impl Paging {
    pub(super) fn new(wanted: Option<usize>, page_size: Option<i32>) -> Paging {
        Paging {
            wanted,
            page_size,
            next: None,
            started: false,
            items: Vec::new(),
        }
    }

    /// `Limit` and start key of the next page, or `None` when done.
    pub(super) fn next_page(&mut self) -> Option<(Option<i32>, Option<Item>)> {
        let remaining = self.wanted.map(|w| w.saturating_sub(self.items.len()));
        if remaining == Some(0) || (self.started && self.next.is_none()) {
            return None;
        }
        let cap = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let limit = match (self.page_size, remaining) {
            (Some(p), Some(r)) => Some(p.min(cap(r))),
            (Some(p), None) => Some(p),
            (None, Some(r)) => Some(cap(r)),
            (None, None) => None,
        };
        Some((limit, self.next.take()))
    }

    /// Takes one page's answer.
    pub(super) fn take(&mut self, items: Vec<Item>, last_key: Option<Item>) {
        self.started = true;
        self.items.extend(items);
        if let Some(w) = self.wanted {
            self.items.truncate(w);
        }
        self.next = last_key;
    }

    pub(super) fn finish(self) -> Vec<Item> {
        self.items
    }
}

impl StoreInner {
    /// Runs `query` page after page until it ends or `wanted` items came.
    pub(super) async fn query(
        &self,
        query: QueryFluentBuilder,
        wanted: Option<usize>,
        what: &str,
    ) -> Result<Vec<Item>, StorageError> {
        let mut paging = Paging::new(wanted, self.page_size);
        while let Some((limit, start)) = paging.next_page() {
            let out = query
                .clone()
                .set_limit(limit)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(what, e))?;
            paging.take(out.items.unwrap_or_default(), out.last_evaluated_key);
        }
        Ok(paging.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::super::items::n;
    use super::*;

    fn item(i: u64) -> Item {
        Item::from([("useq".to_owned(), n(i))])
    }

    fn key(i: u64) -> Option<Item> {
        Some(item(i))
    }

    /// A page request: `Limit` and start key.
    type Asked = (Option<i32>, Option<Item>);

    /// Feeds `pages` (items, last key) to a paging; returns the limits and
    /// start keys it asked with and what it collected.
    fn run(
        wanted: Option<usize>,
        page_size: Option<i32>,
        pages: &[(Vec<u64>, Option<u64>)],
    ) -> (Vec<Asked>, Vec<Item>) {
        let mut p = Paging::new(wanted, page_size);
        let mut asked = Vec::new();
        let mut pages = pages.iter();
        while let Some(request) = p.next_page() {
            asked.push(request);
            let (items, last) = pages.next().expect("asked for a page past the end");
            p.take(items.iter().map(|i| item(*i)).collect(), last.and_then(key));
        }
        assert!(pages.next().is_none(), "stopped before the last page");
        (asked, p.finish())
    }

    #[test]
    fn a_last_page_with_or_without_a_key_ends_the_query() {
        let all: Vec<Item> = (1..=4).map(item).collect();
        // Without a key on the exactly-full last page (moto).
        let (asked, got) = run(None, Some(2), &[(vec![1, 2], Some(2)), (vec![3, 4], None)]);
        assert_eq!(got, all);
        assert_eq!(asked, vec![(Some(2), None), (Some(2), key(2))]);
        // With a key, then an empty page (real DynamoDB may).
        let (asked, got) = run(
            None,
            Some(2),
            &[(vec![1, 2], Some(2)), (vec![3, 4], Some(4)), (vec![], None)],
        );
        assert_eq!(got, all);
        assert_eq!(asked.len(), 3);
        assert_eq!(asked[2], (Some(2), key(4)));
        // An empty page that still carries a key goes on.
        let (_, got) = run(
            None,
            None,
            &[(vec![1], Some(1)), (vec![], Some(3)), (vec![2, 3, 4], None)],
        );
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn a_wanted_count_caps_limits_and_stops_early() {
        // Asks for no more than it still wants, and stops with a key left.
        let (asked, got) = run(
            Some(3),
            Some(2),
            &[(vec![1, 2], Some(2)), (vec![3], Some(3))],
        );
        assert_eq!(got, (1..=3).map(item).collect::<Vec<_>>());
        assert_eq!(asked, vec![(Some(2), None), (Some(1), key(2))]);
        // No page size: the wanted count is the limit.
        let (asked, _) = run(Some(5), None, &[(vec![1, 2], None)]);
        assert_eq!(asked, vec![(Some(5), None)]);
        // Nothing wanted: nothing asked.
        let (asked, got) = run(Some(0), Some(2), &[]);
        assert!(asked.is_empty() && got.is_empty());
        // A page longer than asked (never from DynamoDB) is cut.
        let (_, got) = run(Some(1), None, &[(vec![1, 2], None)]);
        assert_eq!(got.len(), 1);
    }
}
