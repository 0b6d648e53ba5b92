//! Transfer, Stake, Unstake and conservation of NEURO.

use neuroshard_governance::testkit::{account_of, user_key};
use neuroshard_governance::{AccountId, Amount, Command, Effect, GovError};

use crate::support::*;

#[test]
fn balance_rules_table() {
    let to_new = account_of(&user_key(50));
    // y = 2 is not the y-coordinate of a curve point: nobody could sign for it.
    let mut not_a_key = AccountId([0; 32]);
    not_a_key.0[0] = 2;
    // The identity point has small order: under ZIP-215 anybody could sign
    // for it (R = identity, s = 0 verifies on every message).
    let mut small_order = AccountId([0; 32]);
    small_order.0[0] = 1;
    let cases: Vec<(&str, Command, Result<(), GovError>)> = vec![
        (
            "stake zero",
            Command::Stake { amount: Amount(0) },
            Err(GovError::ZeroAmount),
        ),
        (
            "stake more than balance",
            Command::Stake {
                amount: Amount(1000 * NEURO + 1),
            },
            Err(GovError::InsufficientBalance {
                account: user(1),
                needed: Amount(1000 * NEURO + 1),
                available: Amount(1000 * NEURO),
            }),
        ),
        (
            "stake all",
            Command::Stake {
                amount: Amount(1000 * NEURO),
            },
            Ok(()),
        ),
        (
            "unstake more than staked",
            Command::Unstake {
                amount: Amount(2000 * NEURO + 1),
            },
            Err(GovError::InsufficientStake {
                account: user(1),
                needed: Amount(2000 * NEURO + 1),
                staked: Amount(2000 * NEURO),
            }),
        ),
        (
            "unstake some",
            Command::Unstake {
                amount: Amount(1500 * NEURO),
            },
            Ok(()),
        ),
        (
            "transfer to self",
            Command::Transfer {
                to: user(1),
                amount: Amount(1),
            },
            Err(GovError::SelfTransfer { account: user(1) }),
        ),
        (
            "transfer to a non-key",
            Command::Transfer {
                to: not_a_key,
                amount: Amount(1),
            },
            Err(GovError::InvalidAccountKey { account: not_a_key }),
        ),
        (
            "transfer to a small-order key",
            Command::Transfer {
                to: small_order,
                amount: Amount(1),
            },
            Err(GovError::InvalidAccountKey {
                account: small_order,
            }),
        ),
        (
            "transfer creates the receiver",
            Command::Transfer {
                to: to_new,
                amount: Amount(3),
            },
            Ok(()),
        ),
        (
            // The receiver exists now: no creation fee.
            "transfer more than balance",
            Command::Transfer {
                to: to_new,
                amount: Amount(1500 * NEURO),
            },
            Err(GovError::InsufficientBalance {
                account: user(1),
                needed: Amount(1500 * NEURO),
                available: Amount(1500 * NEURO - 3 - NEURO),
            }),
        ),
        (
            // Creating an account needs the amount plus the creation fee.
            "transfer that cannot pay the creation fee",
            Command::Transfer {
                to: account_of(&user_key(51)),
                amount: Amount(1500 * NEURO - 3 - NEURO),
            },
            Err(GovError::InsufficientBalance {
                account: user(1),
                needed: Amount(1500 * NEURO - 3),
                available: Amount(1500 * NEURO - 3 - NEURO),
            }),
        ),
    ];
    let mut c = chain();
    let genesis_supply = c.state.supply().genesis;
    for (name, cmd, expected) in cases {
        let got = c.exec(&user_key(1), cmd).map(|_| ());
        assert_eq!(got, expected, "{name}");
        let s = c.state.supply();
        assert_eq!(
            s.balances + s.staked + s.deposits + s.burned,
            genesis_supply,
            "{name}: conservation"
        );
    }
    assert_eq!(c.state.account(&to_new).unwrap().balance, Amount(3));
    assert_eq!(
        c.state.account(&user(1)).unwrap().staked,
        Amount(500 * NEURO)
    );
}

#[test]
fn a_new_account_can_join_after_genesis() {
    let mut c = chain();
    let newcomer = user_key(60);
    ok(c.exec(
        &user_key(0),
        Command::Transfer {
            to: account_of(&newcomer),
            amount: Amount(200 * NEURO),
        },
    ));
    let r = ok(c.exec(
        &newcomer,
        Command::Stake {
            amount: Amount(150 * NEURO),
        },
    ));
    assert!(matches!(r.effect, Effect::Staked { staked, .. } if staked == Amount(150 * NEURO)));
    // Enough to propose.
    ok(c.exec(
        &newcomer,
        Command::CreateDraft {
            content: heads(1, 4),
        },
    ));
}
