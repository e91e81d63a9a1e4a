//! Capacity fallback: which pool to try next, given the ranked candidates and the pools known
//! to be unavailable (placeholder; the serverless pipeline work fills it).
