//! The memory under a table: the heap for small tables, huge pages for large ones.
//!
//! A search in a table of a million callers lands on a random cache line of tens of
//! megabytes. With 4 KiB pages that is also a TLB miss, whose page walk under a virtual
//! machine's nested paging adds tens of nanoseconds to the cache miss; with 2 MiB pages the
//! whole table needs a handful of TLB entries. Tables of at least 2 MiB therefore live in their own anonymous mapping,
//! aligned to 2 MiB and advised as huge pages (transparent huge pages: a hint the kernel may
//! ignore, and then the mapping works as ordinary memory). Smaller tables stay on the heap,
//! where a huge page would mostly be wasted.

use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use memmap2::MmapMut;

/// The size of a huge page on x86-64 and aarch64 Linux (the PMD size).
pub(super) const HUGE_PAGE: usize = 2 << 20;

/// `count` zero-initialised values of `T`, seen as a slice.
pub(super) enum Storage<T> {
    Heap(Vec<T>),
    Mapped {
        map: MmapMut,
        /// Byte offset of the first value: where the mapping reaches a 2 MiB boundary.
        start: usize,
        count: usize,
    },
}

impl<T: Pod> Storage<T> {
    pub(super) fn zeroed(count: usize) -> Self {
        let bytes = count * size_of::<T>();
        if bytes >= HUGE_PAGE
            && let Some((map, start)) = map_huge_pages(bytes)
        {
            return Self::Mapped { map, start, count };
        }
        Self::Heap(vec![T::zeroed(); count])
    }
}

impl<T: Pod> Deref for Storage<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Self::Heap(values) => values,
            Self::Mapped { map, start, count } => {
                bytemuck::cast_slice(&map[*start..*start + *count * size_of::<T>()])
            }
        }
    }
}

impl<T: Pod> DerefMut for Storage<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Self::Heap(values) => values,
            Self::Mapped { map, start, count } => {
                bytemuck::cast_slice_mut(&mut map[*start..*start + *count * size_of::<T>()])
            }
        }
    }
}

/// An anonymous mapping with at least `bytes` from a 2 MiB boundary on (returned with that
/// boundary's offset), advised as huge pages; `None` if the system has no memory to map.
#[cfg(target_os = "linux")]
fn map_huge_pages(bytes: usize) -> Option<(MmapMut, usize)> {
    let len = bytes.next_multiple_of(HUGE_PAGE);
    // A mapping starts on a 4 KiB page, not necessarily on a huge page: one huge page more
    // holds `len` from the first boundary on. The pages before and after it are never
    // touched, so they take address space but no memory.
    let map = MmapMut::map_anon(len + HUGE_PAGE).ok()?;
    let address = map.as_ptr().addr();
    let start = address.next_multiple_of(HUGE_PAGE) - address;
    // Only a hint: without transparent huge pages the table works on ordinary pages.
    let _ = map.advise_range(memmap2::Advice::HugePage, start, len);
    Some((map, start))
}

/// Transparent huge pages are a Linux feature: elsewhere a mapping would gain nothing over
/// the heap.
#[cfg(not(target_os = "linux"))]
fn map_huge_pages(_bytes: usize) -> Option<(MmapMut, usize)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_storage_is_on_the_heap() {
        let storage = Storage::<u64>::zeroed(HUGE_PAGE / 8 - 1);
        assert!(matches!(storage, Storage::Heap(_)));
        assert_eq!(storage.len(), HUGE_PAGE / 8 - 1);
        assert!(storage.iter().all(|&v| v == 0));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn large_storage_is_mapped_from_a_huge_page_boundary() {
        let count = HUGE_PAGE / 8 + 3;
        let mut storage = Storage::<u64>::zeroed(count);
        assert!(matches!(storage, Storage::Mapped { .. }));
        assert_eq!(storage.len(), count);
        assert!(storage.iter().all(|&v| v == 0));
        assert!(storage.as_ptr().addr().is_multiple_of(HUGE_PAGE));
        storage[count - 1] = 7;
        assert_eq!(storage[count - 1], 7);
    }
}
