//! Tests of both backends through the trait.

use proptest::prelude::*;

use super::*;

const MSG: &[u8] = b"DSSEv1 some bytes";

fn dealt(id: SchemeId, t: u32, n: u32, seed: u8) -> DealtKeys {
    id.scheme().deal(t, n, &[seed; 32]).expect("deal")
}

fn shares_for(
    id: SchemeId,
    keys: &DealtKeys,
    who: &[u32],
    msg: &[u8],
) -> Vec<(ShareIndex, SignatureShare)> {
    who.iter()
        .map(|&i| {
            let share = id
                .scheme()
                .sign_share(&keys.secret_key_shares[i as usize], msg)
                .expect("sign share");
            (ShareIndex(i), share)
        })
        .collect()
}

#[test]
fn blsttc_uses_the_ietf_basic_dst() {
    assert_eq!(blsttc::DST.as_slice(), IETF_BASIC_DST);
}

#[test]
fn scheme_ids_round_trip_and_unknown_ids_are_refused() {
    for id in SchemeId::ALL {
        assert_eq!(id.as_str().parse::<SchemeId>(), Ok(id));
        assert_eq!(scheme_by_id(id.as_str()).map(|s| s.id()).ok(), Some(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.as_str()));
        assert_eq!(serde_json::from_str::<SchemeId>(&json).unwrap(), id);
    }
    assert!(matches!(
        scheme_by_id("bls-threshold-g1"),
        Err(SchemeError::UnknownScheme { id }) if id == "bls-threshold-g1"
    ));
}

#[test]
fn dealing_is_deterministic_in_the_seed() {
    for id in SchemeId::ALL {
        let a = dealt(id, 2, 4, 7);
        let b = dealt(id, 2, 4, 7);
        let c = dealt(id, 2, 4, 8);
        assert_eq!(a.public_key_set, b.public_key_set);
        assert_eq!(a.secret_key_shares, b.secret_key_shares);
        assert_ne!(a.public_key_set, c.public_key_set);
        assert_eq!(a.public_key_set.threshold(), 2);
        assert_eq!(a.public_key_set.size(), 4);
        assert_eq!(a.secret_key_shares.len(), 4);
    }
}

#[test]
fn bad_thresholds_are_refused() {
    for id in SchemeId::ALL {
        for (t, n) in [(4, 4), (5, 4), (0, 0), (0, MAX_SHARES + 1)] {
            assert_eq!(
                id.scheme().deal(t, n, &[0; 32]).err(),
                Some(SchemeError::BadThreshold { t, n })
            );
        }
    }
}

#[test]
fn every_encoding_round_trips() {
    for id in SchemeId::ALL {
        let s = id.scheme();
        let keys = dealt(id, 2, 5, 1);
        let set_bytes = keys.public_key_set.to_bytes();
        assert_eq!(set_bytes.len(), 4 + 3 * GROUP_PUBLIC_KEY_BYTES);
        let set = s.public_key_set_from_bytes(&set_bytes).unwrap();
        assert_eq!(set, keys.public_key_set);
        assert_eq!(
            set.group_public_key(),
            keys.public_key_set.group_public_key()
        );
        for (i, share) in keys.secret_key_shares.iter().enumerate() {
            let back = s.secret_key_share_from_bytes(&share.to_bytes()).unwrap();
            assert_eq!(&back, share);
            assert_eq!(
                back.public_key_share_bytes(),
                set.public_key_share_bytes(ShareIndex(i as u32)).unwrap()
            );
        }
        let group = set.group_public_key();
        let back = s.group_public_key_from_bytes(&group.to_bytes()).unwrap();
        assert_eq!(&back, group);
        let shares = shares_for(id, &keys, &[0, 1, 2], MSG);
        for (_, share) in &shares {
            assert_eq!(
                &s.signature_share_from_bytes(&share.to_bytes()).unwrap(),
                share
            );
        }
        let sig = s.combine(&set, &shares, MSG).unwrap();
        assert_eq!(s.signature_from_bytes(&sig.to_bytes()).unwrap(), sig);
    }
}

#[test]
fn malformed_bytes_are_refused() {
    for id in SchemeId::ALL {
        let s = id.scheme();
        assert!(matches!(
            s.group_public_key_from_bytes(&[1; 47]),
            Err(SchemeError::BadLength {
                expected: 48,
                len: 47,
                ..
            })
        ));
        assert!(matches!(
            s.group_public_key_from_bytes(&[0xff; 48]),
            Err(SchemeError::BadEncoding { .. })
        ));
        let mut identity = [0u8; 48];
        identity[0] = 0xc0;
        assert_eq!(
            s.group_public_key_from_bytes(&identity).err(),
            Some(SchemeError::IdentityKey)
        );
        assert!(s.signature_from_bytes(&[0xaa; 96]).is_err());
        assert!(s.signature_share_from_bytes(&[0xaa; 95]).is_err());
        assert!(s.secret_key_share_from_bytes(&[0xff; 32]).is_err());
        assert!(matches!(
            s.public_key_set_from_bytes(&[0; 4 + 47]),
            Err(SchemeError::BadKeySetLength { len: 51 })
        ));
        // t + 1 = 3 coefficients but n = 2: t >= n.
        let mut set = dealt(id, 2, 4, 3).public_key_set.to_bytes();
        set[..4].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(
            s.public_key_set_from_bytes(&set).err(),
            Some(SchemeError::BadThreshold { t: 2, n: 2 })
        );
    }
}

#[test]
fn values_of_one_scheme_are_refused_by_the_other() {
    let g2 = dealt(SchemeId::G2Rfc9380, 1, 3, 1);
    let tc = dealt(SchemeId::Tc04, 1, 3, 1);
    let err = SchemeId::Tc04
        .scheme()
        .sign_share(&g2.secret_key_shares[0], MSG)
        .unwrap_err();
    assert_eq!(
        err,
        SchemeError::SchemeMismatch {
            what: "secret key share",
            expected: SchemeId::Tc04,
            found: SchemeId::G2Rfc9380
        }
    );
    let shares = shares_for(SchemeId::Tc04, &tc, &[0, 1], MSG);
    assert!(matches!(
        SchemeId::G2Rfc9380
            .scheme()
            .combine(&g2.public_key_set, &shares, MSG),
        Err(SchemeError::SchemeMismatch { .. })
    ));
    let sig = SchemeId::Tc04
        .scheme()
        .combine(&tc.public_key_set, &shares, MSG)
        .unwrap();
    assert!(matches!(
        SchemeId::G2Rfc9380
            .scheme()
            .verify(g2.public_key_set.group_public_key(), MSG, &sig),
        Err(SchemeError::SchemeMismatch { .. })
    ));
}

#[test]
fn combine_refuses_bad_share_lists_before_combining() {
    for id in SchemeId::ALL {
        let s = id.scheme();
        let keys = dealt(id, 2, 4, 9);
        let set = &keys.public_key_set;
        let good = shares_for(id, &keys, &[0, 1, 2, 3], MSG);

        let too_few = &good[..2];
        assert_eq!(
            s.combine(set, too_few, MSG).err(),
            Some(SchemeError::NotEnoughShares { got: 2, needed: 3 })
        );
        let mut dup = good[..3].to_vec();
        dup[2] = dup[0].clone();
        assert_eq!(
            s.combine(set, &dup, MSG).err(),
            Some(SchemeError::DuplicateIndex {
                index: ShareIndex(0)
            })
        );
        let mut unknown = good[..3].to_vec();
        unknown[1].0 = ShareIndex(4);
        assert_eq!(
            s.combine(set, &unknown, MSG).err(),
            Some(SchemeError::UnknownIndex {
                index: ShareIndex(4),
                n: 4
            })
        );
        // Validator 1's share presented as validator 3's.
        let mut swapped = good[..3].to_vec();
        swapped[1].0 = ShareIndex(3);
        assert_eq!(
            s.combine(set, &swapped, MSG).err(),
            Some(SchemeError::InvalidShare {
                index: ShareIndex(3)
            })
        );
        // A share on another message, even beyond the first t + 1, is refused.
        let mut other = good.clone();
        other[3] = shares_for(id, &keys, &[3], b"other")[0].clone();
        assert_eq!(
            s.combine(set, &other, MSG).err(),
            Some(SchemeError::InvalidShare {
                index: ShareIndex(3)
            })
        );
        let mut too_many = good.clone();
        too_many.push(good[0].clone());
        assert_eq!(
            s.combine(set, &too_many, MSG).err(),
            Some(SchemeError::TooManyShares { got: 5, max: 4 })
        );
    }
}

/// `verify_shares` (one pairing check for all on the default backend)
/// agrees with `verify_share` one by one: every valid set passes, at one,
/// some and all n shares; a set with one bad share — signed on another
/// message, or a valid share under another validator's index — fails
/// naming that share, wherever it sits; an unknown index is refused.
#[test]
fn shares_verified_together_agree_with_one_by_one() {
    for id in SchemeId::ALL {
        let scheme = id.scheme();
        let keys = dealt(id, 2, 7, 5);
        let keyset = &keys.public_key_set;
        for who in [
            &[3u32][..],
            &[0, 1, 2],
            &[6, 2, 4, 0],
            &[0, 1, 2, 3, 4, 5, 6],
        ] {
            let good = shares_for(id, &keys, who, MSG);
            let refs: Vec<(ShareIndex, &SignatureShare)> =
                good.iter().map(|(i, s)| (*i, s)).collect();
            scheme
                .verify_shares(keyset, &refs, MSG)
                .unwrap_or_else(|e| panic!("{id:?} {who:?}: {e}"));
            for bad_at in 0..who.len() {
                // Signed on another message.
                let mut bad = good.clone();
                bad[bad_at].1 = shares_for(id, &keys, &[who[bad_at]], b"another message")
                    .remove(0)
                    .1;
                let refs: Vec<(ShareIndex, &SignatureShare)> =
                    bad.iter().map(|(i, s)| (*i, s)).collect();
                assert_eq!(
                    scheme.verify_shares(keyset, &refs, MSG),
                    Err(SchemeError::InvalidShare {
                        index: ShareIndex(who[bad_at])
                    }),
                    "{id:?} {who:?}, bad at {bad_at}"
                );
                // Another validator's valid share under this index.
                let other = (who[bad_at] + 1) % 7;
                let mut swapped = good.clone();
                swapped[bad_at].1 = shares_for(id, &keys, &[other], MSG).remove(0).1;
                let refs: Vec<(ShareIndex, &SignatureShare)> =
                    swapped.iter().map(|(i, s)| (*i, s)).collect();
                assert!(
                    scheme.verify_shares(keyset, &refs, MSG).is_err(),
                    "{id:?} {who:?}: validator {other}'s share under index {}",
                    who[bad_at]
                );
            }
        }
        let one = shares_for(id, &keys, &[0], MSG);
        let refs = [(ShareIndex(7), &one[0].1), (ShareIndex(0), &one[0].1)];
        assert!(matches!(
            scheme.verify_shares(keyset, &refs, MSG),
            Err(SchemeError::UnknownIndex { .. })
        ));
        assert_eq!(scheme.verify_shares(keyset, &[], MSG), Ok(()));
    }
}

/// `verify_signature_and_shares` (one pairing check on the default
/// backend) accepts a combined signature with its shares, and names what
/// is wrong otherwise: the signature (`BadSignature`) before any share.
#[test]
fn signature_and_shares_verified_together() {
    for id in SchemeId::ALL {
        let scheme = id.scheme();
        let keys = dealt(id, 2, 4, 9);
        let keyset = &keys.public_key_set;
        let good = shares_for(id, &keys, &[0, 1, 3], MSG);
        let sig = scheme.combine(keyset, &good, MSG).expect("combine");
        let other_sig = scheme
            .combine(
                keyset,
                &shares_for(id, &keys, &[0, 1, 2], b"other"),
                b"other",
            )
            .expect("combine");
        let refs: Vec<(ShareIndex, &SignatureShare)> = good.iter().map(|(i, s)| (*i, s)).collect();
        assert_eq!(
            scheme.verify_signature_and_shares(keyset, &sig, &refs, MSG),
            Ok(())
        );
        assert_eq!(
            scheme.verify_signature_and_shares(keyset, &other_sig, &refs, MSG),
            Err(SchemeError::BadSignature),
            "{id:?}: a signature on another message"
        );
        let mut bad = good.clone();
        bad[1].1 = shares_for(id, &keys, &[1], b"other").remove(0).1;
        let refs: Vec<(ShareIndex, &SignatureShare)> = bad.iter().map(|(i, s)| (*i, s)).collect();
        assert_eq!(
            scheme.verify_signature_and_shares(keyset, &sig, &refs, MSG),
            Err(SchemeError::InvalidShare {
                index: ShareIndex(1)
            }),
            "{id:?}: a share on another message"
        );
        // combine_verified gives the signature combine gives.
        assert_eq!(
            scheme
                .combine_verified(keyset, &good, MSG)
                .expect("combine")
                .to_bytes(),
            sig.to_bytes()
        );
    }
}

#[test]
fn t_shares_do_not_make_a_signature() {
    for id in SchemeId::ALL {
        let s = id.scheme();
        let keys = dealt(id, 2, 4, 5);
        let set = &keys.public_key_set;
        let full = s
            .combine(set, &shares_for(id, &keys, &[0, 1, 2], MSG), MSG)
            .unwrap();
        // Interpolating t shares as if they were enough (a dishonest
        // combiner): a (t-1)-degree key set over the same shares.
        let two = shares_for(id, &keys, &[0, 1], MSG);
        let forged = forge_from_t_shares(id, set, &two);
        assert_ne!(forged.to_bytes(), full.to_bytes());
        assert_eq!(
            s.verify(set.group_public_key(), MSG, &forged),
            Err(SchemeError::BadSignature)
        );
    }
}

/// Lagrange-interpolates `t` shares at zero, what a combiner would get by
/// pretending the threshold were `t - 1`.
pub(crate) fn forge_from_t_shares(
    id: SchemeId,
    set: &PublicKeySet,
    shares: &[(ShareIndex, SignatureShare)],
) -> Signature {
    let s = id.scheme();
    // A key set of degree t - 1: drop the last coefficient. Its
    // interpolation of the given shares is what t shares can produce.
    let bytes = set.to_bytes();
    let shorter = &bytes[..bytes.len() - GROUP_PUBLIC_KEY_BYTES];
    let lower = s.public_key_set_from_bytes(shorter).unwrap();
    let sig = match (&lower.repr, id) {
        (keys::PublicKeySetRepr::G2(k), _) => {
            let parts: Vec<(usize, blsttc::SignatureShare)> = shares
                .iter()
                .map(|(i, sh)| match &sh.repr {
                    keys::SignatureShareRepr::G2(x) => (i.0 as usize, x.clone()),
                    keys::SignatureShareRepr::Tc04(_) => unreachable!("test uses one scheme"),
                })
                .collect();
            k.combine_signatures(parts).unwrap().to_bytes()
        }
        (keys::PublicKeySetRepr::Tc04(k), _) => {
            let parts: Vec<(usize, &threshold_crypto::SignatureShare)> = shares
                .iter()
                .map(|(i, sh)| match &sh.repr {
                    keys::SignatureShareRepr::Tc04(x) => (i.0 as usize, x),
                    keys::SignatureShareRepr::G2(_) => unreachable!("test uses one scheme"),
                })
                .collect();
            k.combine_signatures(parts).unwrap().to_bytes()
        }
    };
    s.signature_from_bytes(&sig).unwrap()
}

#[test]
fn batch_verification_accepts_good_and_refuses_one_bad() {
    for id in SchemeId::ALL {
        let s = id.scheme();
        let keys = dealt(id, 1, 3, 2);
        let set = &keys.public_key_set;
        let msgs: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 10 + i as usize]).collect();
        let sigs: Vec<Signature> = msgs
            .iter()
            .map(|m| {
                s.combine(set, &shares_for(id, &keys, &[0, 2], m), m)
                    .unwrap()
            })
            .collect();
        let items: Vec<(&[u8], &Signature)> =
            msgs.iter().map(|m| m.as_slice()).zip(sigs.iter()).collect();
        assert_eq!(s.verify_batch(set.group_public_key(), &items), Ok(()));
        assert_eq!(s.verify_batch(set.group_public_key(), &[]), Ok(()));
        // Two signatures swapped: each is valid, but not for its message.
        let mut swapped = items.clone();
        swapped[3].1 = items[4].1;
        swapped[4].1 = items[3].1;
        assert_eq!(
            s.verify_batch(set.group_public_key(), &swapped),
            Err(SchemeError::BadBatch { count: 12 })
        );
        let other = dealt(id, 1, 3, 3);
        assert_eq!(
            s.verify_batch(other.public_key_set.group_public_key(), &items),
            Err(SchemeError::BadBatch { count: 12 })
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Any t + 1 of n shares give the same signature, which verifies; t do
    /// not. Every case runs on both backends.
    #[test]
    fn any_t_plus_one_shares_agree(
        n in 1u32..7,
        t_pick in any::<prop::sample::Index>(),
        subset_seed in any::<u64>(),
        seed in any::<[u8; 32]>(),
        msg in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        for scheme in SchemeId::ALL {
            let s = scheme.scheme();
            let t = t_pick.index(n as usize) as u32;
            let keys = s.deal(t, n, &seed).unwrap();
            let set = &keys.public_key_set;
            let mut order: Vec<u32> = (0..n).collect();
            // A seeded shuffle picks two different subsets of size t + 1.
            let mut x = subset_seed;
            for i in (1..order.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (x >> 33) as usize % (i + 1));
            }
            let first: Vec<u32> = order[..(t + 1) as usize].to_vec();
            let last: Vec<u32> = order[order.len() - (t + 1) as usize..].to_vec();
            let a = s.combine(set, &shares_for(scheme, &keys, &first, &msg), &msg).unwrap();
            let b = s.combine(set, &shares_for(scheme, &keys, &last, &msg), &msg).unwrap();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(s.verify(set.group_public_key(), &msg, &a), Ok(()));
            let mut altered = msg.clone();
            altered.push(0);
            prop_assert_eq!(s.verify(set.group_public_key(), &altered, &a), Err(SchemeError::BadSignature));
            if t > 0 {
                let few = shares_for(scheme, &keys, &first[..t as usize], &msg);
                prop_assert_eq!(
                    s.combine(set, &few, &msg).err(),
                    Some(SchemeError::NotEnoughShares { got: t as usize, needed: (t + 1) as usize })
                );
                let forged = forge_from_t_shares(scheme, set, &few);
                prop_assert_eq!(s.verify(set.group_public_key(), &msg, &forged), Err(SchemeError::BadSignature));
            }
        }
    }
}
