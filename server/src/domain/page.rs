//! Keyset pagination. A page token is an opaque encoding of the last id returned; pages are
//! ordered by id, so rows inserted meanwhile never shift or repeat earlier pages.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::ValidationError;

/// Page size used when a request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page size a request may ask for.
pub const MAX_PAGE_SIZE: u64 = 1000;

const TOKEN_PREFIX: &str = "after:";

/// A validated `page_size` / `page_token` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items to return at most.
    pub size: u64,
    /// Return items whose ordering key is strictly greater than this.
    pub after: Option<i64>,
}

impl PageRequest {
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, ValidationError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size > 0 && (size as u64) <= MAX_PAGE_SIZE => size as u64,
            _ => {
                return Err(ValidationError::new(
                    "page_size",
                    format!("must be between 0 and {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode_token(page_token).ok_or_else(|| {
                ValidationError::new("page_token", "is not a token returned by this list")
            })?)
        };
        Ok(Self { size, after })
    }

    /// The first page of the given size.
    pub fn first(size: u64) -> Self {
        Self { size, after: None }
    }

    /// How many rows a store query should fetch: one more than the page, to learn if more exist.
    pub fn fetch_limit(&self) -> u64 {
        self.size + 1
    }
}

fn decode_token(token: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    text.strip_prefix(TOKEN_PREFIX)?.parse().ok()
}

fn encode_token(after: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{after}"))
}

/// One page of results and the token for the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with [`PageRequest::fetch_limit`]; `key` gives a row's
    /// ordering key.
    pub fn from_rows(mut rows: Vec<T>, request: PageRequest, key: impl Fn(&T) -> i64) -> Self {
        let has_more = rows.len() as u64 > request.size;
        rows.truncate(request.size as usize);
        let next_page_token = match (has_more, rows.last()) {
            (true, Some(last)) => encode_token(key(last)),
            _ => String::new(),
        };
        Self {
            items: rows,
            next_page_token,
        }
    }

    /// Ends the page early, after at least one item, so that the items' `size`s add up to at
    /// most `max_bytes`; the next page then starts after the last item kept.
    pub fn limit_bytes(
        mut self,
        max_bytes: usize,
        size: impl Fn(&T) -> usize,
        key: impl Fn(&T) -> i64,
    ) -> Self {
        let mut total = 0;
        let keep = self
            .items
            .iter()
            .position(|item| {
                total += size(item);
                total > max_bytes
            })
            .map_or(self.items.len(), |over| over.max(1));
        if keep < self.items.len() {
            self.items.truncate(keep);
            if let Some(last) = self.items.last() {
                self.next_page_token = encode_token(key(last));
            }
        }
        self
    }

    pub fn map<U>(self, convert: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(convert).collect(),
            next_page_token: self.next_page_token,
        }
    }

    /// Like [`Page::map`], for a conversion that can fail.
    pub fn try_map<U, E>(self, convert: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self
                .items
                .into_iter()
                .map(convert)
                .collect::<Result<_, _>>()?,
            next_page_token: self.next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_end_before_the_byte_limit() {
        let page = |items: Vec<usize>| Page {
            items,
            next_page_token: String::new(),
        };
        let key = |item: &usize| *item as i64;
        // 3 + 4 fit in 8; 5 more would not: the next page starts after the 4.
        let limited = page(vec![3, 4, 5, 6]).limit_bytes(8, |item| *item, key);
        assert_eq!(limited.items, vec![3, 4]);
        assert_eq!(decode_token(&limited.next_page_token), Some(4));
        // One item larger than the limit still makes a page.
        let limited = page(vec![20, 1]).limit_bytes(8, |item| *item, key);
        assert_eq!(limited.items, vec![20]);
        assert_eq!(decode_token(&limited.next_page_token), Some(20));
        // Under the limit nothing changes, the token included.
        let limited = page(vec![1, 2]).limit_bytes(8, |item| *item, key);
        assert_eq!(limited.items, vec![1, 2]);
        assert_eq!(limited.next_page_token, "");
    }

    #[test]
    fn sizes() {
        assert_eq!(PageRequest::parse(0, "").expect("default").size, 50);
        assert_eq!(PageRequest::parse(1000, "").expect("max").size, 1000);
        assert_eq!(
            PageRequest::parse(-1, "")
                .expect_err("negative")
                .to_string(),
            "page_size must be between 0 and 1000"
        );
        assert!(PageRequest::parse(1001, "").is_err());
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let page = Page::from_rows(vec![1, 2, 3], PageRequest::first(2), |id| *id);
        assert_eq!(page.items, vec![1, 2]);
        let next = PageRequest::parse(2, &page.next_page_token).expect("token");
        assert_eq!(next.after, Some(2));
        let last = Page::from_rows(vec![3], next, |id| *id);
        assert!(last.next_page_token.is_empty());
        assert_eq!(
            PageRequest::parse(10, "garbage!")
                .expect_err("garbage")
                .field(),
            "page_token"
        );
    }
}
