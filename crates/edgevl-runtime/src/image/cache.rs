//! Image embeddings kept in memory, least recently used first out, bounded by bytes.

use std::collections::HashMap;
use std::sync::Arc;

/// An LRU map from an image key (pixels + tiling plan + projector, see `ImageKey`) to its
/// projected embeddings.
#[derive(Debug)]
pub(crate) struct EmbeddingCache {
    capacity_bytes: usize,
    used_bytes: usize,
    clock: u64,
    entries: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    rows: Arc<[f32]>,
    last_used: u64,
}

fn bytes_of(rows: &[f32]) -> usize {
    std::mem::size_of_val(rows)
}

impl EmbeddingCache {
    /// An empty cache holding at most `capacity_bytes` of embeddings (0 disables it).
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        EmbeddingCache { capacity_bytes, used_bytes: 0, clock: 0, entries: HashMap::new() }
    }

    /// The embeddings stored under `key`, marking them most recently used.
    pub(crate) fn get(&mut self, key: u64) -> Option<Arc<[f32]>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(&key).map(|e| {
            e.last_used = clock;
            e.rows.clone()
        })
    }

    /// Stores `rows` under `key`, evicting the least recently used entries until it fits; an
    /// entry larger than the whole capacity is not stored.
    pub(crate) fn insert(&mut self, key: u64, rows: Arc<[f32]>) {
        let size = bytes_of(&rows);
        if size > self.capacity_bytes {
            return;
        }
        if let Some(old) = self.entries.remove(&key) {
            self.used_bytes -= bytes_of(&old.rows);
        }
        while self.used_bytes + size > self.capacity_bytes {
            let Some((&oldest, _)) = self.entries.iter().min_by_key(|(_, e)| e.last_used) else { break };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used_bytes -= bytes_of(&e.rows);
            }
        }
        self.clock += 1;
        self.used_bytes += size;
        self.entries.insert(key, Entry { rows, last_used: self.clock });
    }

    /// Bytes of embeddings held.
    pub(crate) fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Number of images held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, v: f32) -> Arc<[f32]> {
        vec![v; n].into()
    }

    #[test]
    fn evicts_least_recently_used_within_the_byte_bound() {
        let mut c = EmbeddingCache::new(3 * 400);
        c.insert(1, rows(100, 1.0));
        c.insert(2, rows(100, 2.0));
        c.insert(3, rows(100, 3.0));
        assert_eq!((c.len(), c.used_bytes()), (3, 1200));
        assert_eq!(c.get(1).unwrap()[0], 1.0); // 1 is now the most recent; 2 the oldest
        c.insert(4, rows(100, 4.0));
        assert!(c.get(2).is_none());
        assert!(c.get(1).is_some() && c.get(3).is_some() && c.get(4).is_some());
        // Two slots' worth evicts the two oldest (1 was used before 3 and 4 above).
        c.insert(5, rows(200, 5.0));
        assert_eq!((c.len(), c.used_bytes()), (2, 1200));
        assert!(c.get(4).is_some() && c.get(5).is_some());
    }

    #[test]
    fn too_large_or_disabled_stores_nothing() {
        let mut c = EmbeddingCache::new(399);
        c.insert(1, rows(100, 1.0));
        assert!(c.get(1).is_none());
        let mut off = EmbeddingCache::new(0);
        off.insert(1, rows(1, 1.0));
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn reinserting_a_key_replaces_it() {
        let mut c = EmbeddingCache::new(1000);
        c.insert(7, rows(100, 1.0));
        c.insert(7, rows(50, 2.0));
        assert_eq!((c.len(), c.used_bytes()), (1, 200));
        assert_eq!(c.get(7).unwrap()[0], 2.0);
    }
}
