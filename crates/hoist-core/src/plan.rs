//! Part sizing: pure functions, property-tested near every limit.
//!
//! Known size: part size = max(requested, ceil(size / `max_parts`)), rounded up to a whole MiB so
//! parts stay aligned, and it must lie within the provider's part range; a size that cannot be
//! covered (over the object limit, or needing parts over the max part size) fails before anything
//! is created. Below the single-PUT threshold the plan is one PutObject.
//!
//! Unknown size (a stream): parts start at the requested size and double every
//! [`STREAM_PARTS_PER_STEP`] parts, capped at the max part size, so 10,000 parts reach
//! 1000 × P × (2^10 − 1) bytes: ≈ 8 TiB from 8 MiB parts, ≈ 12.7 TiB from the 16 MiB default (parts cap at 5 GiB).

use crate::config::{MIB, ProviderLimits};

/// How an upload is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Total bytes.
    pub size: u64,
    /// Size of every part but the last.
    pub part_size: u64,
    /// Number of parts (0 for a single PutObject).
    pub part_count: u64,
}

/// One part of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSpec {
    /// 1-based part number.
    pub number: u32,
    /// Byte offset in the source.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Why a size cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The object is larger than the provider allows.
    #[error("{size} bytes is more than this provider's object limit of {max} bytes")]
    TooLarge {
        /// Requested size.
        size: u64,
        /// Provider maximum.
        max: u64,
    },
    /// The requested part size is outside the provider's range.
    #[error("part size {requested} is out of range: it must be between {min} (5 MiB) and {max} (5 GiB)")]
    PartSizeOutOfRange {
        /// Requested.
        requested: u64,
        /// Minimum.
        min: u64,
        /// Maximum.
        max: u64,
    },
}

/// Parts per growth step for streams of unknown size.
pub const STREAM_PARTS_PER_STEP: u32 = 1000;

/// Checks a requested part size against the limits.
pub fn check_part_size(requested: u64, limits: &ProviderLimits) -> Result<(), PlanError> {
    if requested < limits.min_part_size || requested > limits.max_part_size {
        return Err(PlanError::PartSizeOutOfRange { requested, min: limits.min_part_size, max: limits.max_part_size });
    }
    Ok(())
}

/// Plans an upload of `size` bytes.
pub fn plan(
    size: u64,
    requested_part: u64,
    single_put_threshold: u64,
    limits: &ProviderLimits,
) -> Result<Plan, PlanError> {
    check_part_size(requested_part, limits)?;
    if size > limits.max_object_size {
        return Err(PlanError::TooLarge { size, max: limits.max_object_size });
    }
    if size < single_put_threshold {
        return Ok(Plan { size, part_size: size, part_count: 0 });
    }
    let needed = size.div_ceil(limits.max_parts);
    let part_size = requested_part.max(needed.div_ceil(MIB) * MIB).min(limits.max_part_size);
    let part_count = size.div_ceil(part_size).max(1);
    if part_count > limits.max_parts {
        return Err(PlanError::TooLarge { size, max: limits.max_parts * limits.max_part_size });
    }
    Ok(Plan { size, part_size, part_count })
}

impl Plan {
    /// Whether the upload is one PutObject.
    #[must_use]
    pub fn is_single_put(&self) -> bool {
        self.part_count == 0
    }

    /// The parts, in order.
    pub fn parts(&self) -> impl Iterator<Item = PartSpec> + '_ {
        (0..self.part_count).map(move |i| {
            let offset = i * self.part_size;
            PartSpec {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                offset,
                len: self.part_size.min(self.size - offset),
            }
        })
    }

    /// Part `number` (1-based), if the plan has it.
    #[must_use]
    pub fn part(&self, number: u32) -> Option<PartSpec> {
        let i = u64::from(number).checked_sub(1)?;
        (i < self.part_count).then(|| {
            let offset = i * self.part_size;
            PartSpec { number, offset, len: self.part_size.min(self.size - offset) }
        })
    }
}

/// Size of part `number` (1-based) of a stream of unknown size.
#[must_use]
pub fn stream_part_size(number: u32, initial: u64, limits: &ProviderLimits) -> u64 {
    if limits.equal_parts {
        return initial;
    }
    let step = (number.saturating_sub(1) / STREAM_PARTS_PER_STEP).min(20);
    initial.saturating_mul(1 << step).min(limits.max_part_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GIB, TIB};
    use proptest::prelude::*;

    const AWS: ProviderLimits = ProviderLimits::AWS;

    fn check_invariants(p: &Plan, limits: &ProviderLimits) {
        assert!(p.part_count <= limits.max_parts, "{p:?}");
        assert!(p.part_size <= limits.max_part_size, "{p:?}");
        let parts: Vec<PartSpec> = p.parts().collect();
        assert_eq!(parts.iter().map(|s| s.len).sum::<u64>(), p.size);
        for w in parts.windows(2) {
            assert_eq!(w[0].offset + w[0].len, w[1].offset);
            assert!(w[0].len >= limits.min_part_size);
            assert_eq!(w[0].len, p.part_size);
        }
        if let Some(last) = parts.last() {
            assert!(last.len > 0 && last.len <= p.part_size);
        }
    }

    #[test]
    fn near_the_part_count_limit() {
        for k in [5 * MIB, 8 * MIB, 16 * MIB, GIB, 5 * GIB] {
            for size in [k * 10_000 - 1, k * 10_000, k * 10_000 + 1] {
                match plan(size, 5 * MIB, 16 * MIB, &AWS) {
                    Ok(p) => check_invariants(&p, &AWS),
                    Err(e) => assert!(size > AWS.max_object_size, "{size}: {e}"),
                }
            }
        }
        // 10,000 × 5 MiB exactly fits in 10,000 parts; one byte more needs 6 MiB parts.
        assert_eq!(plan(10_000 * 5 * MIB, 5 * MIB, 0, &AWS).unwrap().part_count, 10_000);
        let p = plan(10_000 * 5 * MIB + 1, 5 * MIB, 0, &AWS).unwrap();
        assert_eq!(p.part_size, 6 * MIB);
    }

    #[test]
    fn edges() {
        let zero = plan(0, 16 * MIB, 16 * MIB, &AWS).unwrap();
        assert!(zero.is_single_put());
        let p = plan(16 * MIB - 1, 16 * MIB, 16 * MIB, &AWS).unwrap();
        assert!(p.is_single_put());
        let p = plan(16 * MIB, 16 * MIB, 16 * MIB, &AWS).unwrap();
        assert_eq!((p.part_count, p.part_size), (1, 16 * MIB));
        let p = plan(16 * MIB + 1, 16 * MIB, 16 * MIB, &AWS).unwrap();
        assert_eq!(p.part_count, 2);
        assert_eq!(p.part(2).unwrap().len, 1);
        assert_eq!(p.part(3), None);
        assert_eq!(p.part(0), None);
        // 50 TB fits AWS; one byte more does not; a 5 TiB store refuses 5 TiB + 1.
        let p = plan(50_000_000_000_000, 16 * MIB, 0, &AWS).unwrap();
        check_invariants(&p, &AWS);
        assert!(matches!(plan(50_000_000_000_001, 16 * MIB, 0, &AWS), Err(PlanError::TooLarge { .. })));
        let lim = ProviderLimits::STORE_5TIB;
        check_invariants(&plan(5 * TIB, 16 * MIB, 0, &lim).unwrap(), &lim);
        assert!(plan(5 * TIB + 1, 16 * MIB, 0, &lim).is_err());
    }

    #[test]
    fn part_size_out_of_range_names_the_range() {
        let e = plan(GIB, 5 * MIB - 1, 0, &AWS).unwrap_err();
        assert!(e.to_string().contains("between"), "{e}");
        assert!(plan(GIB, 5 * GIB + 1, 0, &AWS).is_err());
        assert!(plan(GIB, 5 * MIB, 0, &AWS).is_ok());
        assert!(plan(GIB, 5 * GIB, 0, &AWS).is_ok());
    }

    #[test]
    fn stream_parts_grow_to_reach_the_limit() {
        assert_eq!(stream_part_size(1, 8 * MIB, &AWS), 8 * MIB);
        assert_eq!(stream_part_size(1000, 8 * MIB, &AWS), 8 * MIB);
        assert_eq!(stream_part_size(1001, 8 * MIB, &AWS), 16 * MIB);
        let total: u64 = (1..=10_000).map(|n| stream_part_size(n, 16 * MIB, &AWS)).sum();
        assert!(total >= 12 * TIB, "{total}");
        assert!((1..=10_000).all(|n| stream_part_size(n, 5 * GIB, &AWS) == 5 * GIB));
        assert_eq!(stream_part_size(9_999, 8 * MIB, &ProviderLimits::R2), 8 * MIB);
    }

    proptest! {
        #[test]
        fn any_size_within_limits_plans_validly(size in 0u64..=50_000_000_000_000, req_mib in 5u64..=5120) {
            let p = plan(size, req_mib * MIB, 16 * MIB, &AWS).unwrap();
            if !p.is_single_put() {
                check_invariants(&p, &AWS);
                prop_assert!(p.part_size >= req_mib * MIB);
            }
        }
    }
}
