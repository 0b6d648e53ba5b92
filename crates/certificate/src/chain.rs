//! Verifying a run of consecutive certificates of one committee at once.
//!
//! Every certificate gets the single-certificate checks except the pairing;
//! the run must be gap-free and hash-linked; then all signatures are checked
//! together with [`crate::ThresholdScheme::verify_batch`]. For the default
//! scheme that is one random-linear-combination check (see `scheme/batch.rs`);
//! `bls-threshold-tc04` has no batch API, so it verifies one by one. The
//! per-certificate checks run on all cores (`crate::parallel`). If the
//! batch fails, the certificates are verified one by one to name the first
//! bad one.

use crate::envelope::Envelope;
use crate::merkle::Hash;
use crate::scheme::{SchemeError, Signature};
use crate::verifier::{Unsigned, VerifiedCertificate, Verifier, VerifyError};

/// Most certificates one `verify_chain` call accepts.
pub const MAX_CHAIN_CERTIFICATES: usize = 100_000;

/// Why a run of certificates is refused; `index` is the position in the slice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("{count} certificates given, more than the {max} one call verifies")]
    TooMany { count: usize, max: usize },
    #[error("certificate {index}: {source}")]
    Certificate { index: usize, source: VerifyError },
    #[error(
        "certificate {index} has sequence {found}, expected {expected} (runs must be gap-free)"
    )]
    Gap {
        index: usize,
        expected: u64,
        found: u64,
    },
    #[error("certificate {index} (sequence {sequence}) does not name the previous certificate's payload hash")]
    BrokenLink { index: usize, sequence: u64 },
}

impl Verifier {
    /// Verifies consecutive certificates (sequence `s, s+1, …`, each naming
    /// the previous one's payload hash; the first one's link is checked only
    /// if `s == 1`, where it must be all zeros) and returns their payloads.
    pub fn verify_chain(
        &self,
        envelopes: &[Envelope],
    ) -> Result<Vec<VerifiedCertificate>, ChainError> {
        if envelopes.len() > MAX_CHAIN_CERTIFICATES {
            return Err(ChainError::TooMany {
                count: envelopes.len(),
                max: MAX_CHAIN_CERTIFICATES,
            });
        }
        // Decoding and signature decompression/subgroup checks, on all cores;
        // errors are then reported in order, the first one wins.
        let unsigned = crate::parallel::map(envelopes, |e| self.check_unsigned(e));
        let mut checked: Vec<(Unsigned, Hash)> = Vec::with_capacity(envelopes.len());
        for (index, (envelope, u)) in envelopes.iter().zip(unsigned).enumerate() {
            let u = u.map_err(|source| ChainError::Certificate { index, source })?;
            let sequence = u.payload.sequence;
            let expected_link = match checked.last() {
                None if sequence == 1 => Some([0u8; 32]),
                None => None,
                Some((prev, prev_hash)) => {
                    let expected = prev.payload.sequence + 1;
                    if sequence != expected {
                        return Err(ChainError::Gap {
                            index,
                            expected,
                            found: sequence,
                        });
                    }
                    Some(*prev_hash)
                }
            };
            if let Some(link) = expected_link {
                if u.payload.previous_payload_hash != link {
                    return Err(ChainError::BrokenLink { index, sequence });
                }
            }
            checked.push((u, envelope.payload_hash()));
        }
        let items: Vec<(&[u8], &Signature)> = checked
            .iter()
            .map(|(u, _)| (u.signed_bytes.as_slice(), &u.signature))
            .collect();
        match self.scheme().verify_batch(self.group_key(), &items) {
            Ok(()) => Ok(checked
                .into_iter()
                .map(|(u, payload_hash)| VerifiedCertificate {
                    payload: u.payload,
                    payload_hash,
                })
                .collect()),
            Err(SchemeError::BadBatch { .. }) => {
                for (index, (msg, sig)) in items.iter().enumerate() {
                    if self.scheme().verify(self.group_key(), msg, sig).is_err() {
                        return Err(ChainError::Certificate {
                            index,
                            source: VerifyError::BadSignature,
                        });
                    }
                }
                // The batch failed but every signature verifies alone: cannot
                // happen for a sound batch check; refuse rather than accept.
                Err(ChainError::Certificate {
                    index: 0,
                    source: VerifyError::BadSignature,
                })
            }
            Err(other) => Err(ChainError::Certificate {
                index: 0,
                source: VerifyError::MalformedSignature(other),
            }),
        }
    }
}
