//! Transfer, Stake and Unstake: moving NEURO between accounts, and between
//! balance and stake (DESIGN §4). Every check comes before any change.

use crate::account::Account;
use crate::error::GovError;
use crate::limits::MAX_ACCOUNTS;
use crate::receipt::Effect;
use crate::signature;
use crate::state::GovernanceState;
use crate::types::{AccountId, Amount, NepId, Timestamp};

impl GovernanceState {
    pub(crate) fn transfer(
        &mut self,
        from: AccountId,
        to: AccountId,
        amount: Amount,
    ) -> Result<Effect, GovError> {
        if amount == Amount::ZERO {
            return Err(GovError::ZeroAmount);
        }
        if from == to {
            return Err(GovError::SelfTransfer { account: from });
        }
        if !signature::usable_account_key(&to) {
            return Err(GovError::InvalidAccountKey { account: to });
        }
        let created_receiver = !self.accounts.contains_key(&to);
        // Creating an account is priced: the fee is burned, so the accounts
        // one balance can create are bounded by it.
        let fee = if created_receiver {
            self.params.gov().account_creation_fee
        } else {
            Amount::ZERO
        };
        let needed = amount
            .checked_add(fee)
            .ok_or(GovError::AmountOverflow { account: from })?;
        let sender = &self.accounts[&from];
        if sender.balance < needed {
            return Err(GovError::InsufficientBalance {
                account: from,
                needed,
                available: sender.balance,
            });
        }
        if created_receiver && self.accounts.len() >= MAX_ACCOUNTS {
            return Err(GovError::TooManyAccounts {
                account: to,
                accounts: self.accounts.len(),
                max: MAX_ACCOUNTS,
            });
        }
        if created_receiver {
            self.require_growth_budget(crate::budget::ACCOUNT_CHARGE)?;
        }
        let receiver_balance = self
            .accounts
            .get(&to)
            .map(|a| a.balance)
            .unwrap_or_default();
        let new_receiver_balance = receiver_balance
            .checked_add(amount)
            .ok_or(GovError::AmountOverflow { account: to })?;
        self.account_mut(from).balance.0 -= needed.0;
        self.supply.balances -= fee.0;
        self.supply.burned += fee.0;
        if created_receiver {
            let account = Account::default();
            self.state_bytes += crate::budget::account_charge(&account);
            self.accounts.insert(to, account);
        }
        self.account_mut(to).balance = new_receiver_balance;
        Ok(Effect::Transferred {
            from,
            to,
            amount,
            created_receiver,
            fee_burned: fee,
        })
    }

    pub(crate) fn stake(
        &mut self,
        log_index: u64,
        who: AccountId,
        amount: Amount,
    ) -> Result<Effect, GovError> {
        if amount == Amount::ZERO {
            return Err(GovError::ZeroAmount);
        }
        let account = &self.accounts[&who];
        if account.balance < amount {
            return Err(GovError::InsufficientBalance {
                account: who,
                needed: amount,
                available: account.balance,
            });
        }
        let staked = account
            .staked
            .checked_add(amount)
            .ok_or(GovError::AmountOverflow { account: who })?;
        let open = self.open_snapshot_list();
        self.require_checkpoint_budget(log_index, who, &open)?;
        let account = self.account_mut(who);
        let before = crate::budget::account_charge(account);
        account.balance.0 -= amount.0;
        account.staked = staked;
        account.checkpoint(log_index, &open);
        let after = crate::budget::account_charge(account);
        self.recharge(before, after);
        self.supply.balances -= amount.0;
        self.supply.staked += amount.0;
        Ok(Effect::Staked {
            account: who,
            amount,
            staked,
        })
    }

    pub(crate) fn unstake(
        &mut self,
        log_index: u64,
        who: AccountId,
        amount: Amount,
    ) -> Result<Effect, GovError> {
        if amount == Amount::ZERO {
            return Err(GovError::ZeroAmount);
        }
        let account = &self.accounts[&who];
        if account.staked < amount {
            return Err(GovError::InsufficientStake {
                account: who,
                needed: amount,
                staked: account.staked,
            });
        }
        let remaining = Amount(account.staked.0 - amount.0);
        if let Some((nep, locked, until_ms)) = self.strongest_lock(who) {
            if remaining < locked {
                return Err(GovError::StakeLocked {
                    account: who,
                    requested: amount,
                    unlocked: Amount(account.staked.0.saturating_sub(locked.0)),
                    locked,
                    nep,
                    until_ms,
                });
            }
        }
        let open = self.open_snapshot_list();
        // Never refused by the budget: unstaking frees what a staker owns, and
        // its checkpoints are bounded by the open votes (and charged).
        let account = self.account_mut(who);
        let before = crate::budget::account_charge(account);
        account.staked = remaining;
        account.balance.0 += amount.0;
        account.checkpoint(log_index, &open);
        let after = crate::budget::account_charge(account);
        self.recharge(before, after);
        self.supply.staked -= amount.0;
        self.supply.balances += amount.0;
        Ok(Effect::Unstaked {
            account: who,
            amount,
            staked: remaining,
        })
    }

    /// A stake change that would keep one more checkpoint (an open vote
    /// needs the current one) is growth, refused when the budget is full.
    fn require_checkpoint_budget(
        &self,
        log_index: u64,
        who: AccountId,
        open: &[u64],
    ) -> Result<(), GovError> {
        let mut probe = self.accounts[&who].clone();
        let before = crate::budget::account_charge(&probe);
        probe.checkpoint(log_index, open);
        let after = crate::budget::account_charge(&probe);
        self.require_budget(after.saturating_sub(before))
    }

    /// The largest lock on `who`'s stake: (NEP, locked power, vote deadline).
    pub(crate) fn strongest_lock(&self, who: AccountId) -> Option<(NepId, Amount, Timestamp)> {
        let account = self.accounts.get(&who)?;
        account
            .vote_locks
            .iter()
            .filter_map(|l| {
                let vote = self.proposals.get(&l.nep)?.open_vote()?;
                Some((l.nep, l.power, vote.deadline_ms))
            })
            .max_by_key(|(nep, locked, _)| (*locked, std::cmp::Reverse(*nep)))
    }

    /// The account of an author whose existence was already checked.
    pub(crate) fn account_mut(&mut self, who: AccountId) -> &mut Account {
        self.accounts
            .get_mut(&who)
            .expect("account exists: every caller checked it first")
    }
}

#[cfg(test)]
mod tests {
    use crate::command::Command;
    use crate::error::GovError;
    use crate::limits::MAX_ACCOUNTS;
    use crate::testkit::{account_of, user_key, TestChain, TestConfig};
    use crate::types::{AccountId, Amount};

    /// At `MAX_ACCOUNTS` a transfer to a new key is refused with the rule
    /// and the numbers; transfers between existing accounts go on, and
    /// nothing is created or moved by the refusal.
    #[test]
    fn a_transfer_that_would_create_an_account_past_the_limit_is_refused() {
        let mut c = TestChain::new(&TestConfig::default());
        let to_fill = MAX_ACCOUNTS - c.state.accounts.len();
        // Zero-balance placeholders (keys are never signed for here).
        for i in 0..to_fill as u64 {
            let mut key = [0xA5; 32];
            key[..8].copy_from_slice(&i.to_be_bytes());
            c.state.accounts.entry(AccountId(key)).or_default();
        }
        assert_eq!(c.state.accounts.len(), MAX_ACCOUNTS);
        c.state.state_bytes = c.state.recount_state_bytes();
        let newcomer = account_of(&user_key(60));
        let sender = account_of(&user_key(0));
        let sender_balance = c.state.account(&sender).expect("exists").balance;
        let refused = c.exec(
            &user_key(0),
            Command::Transfer {
                to: newcomer,
                amount: Amount(1),
            },
        );
        assert_eq!(
            refused,
            Err(GovError::TooManyAccounts {
                account: newcomer,
                accounts: MAX_ACCOUNTS,
                max: MAX_ACCOUNTS,
            })
        );
        assert_eq!(refused.unwrap_err().rule(), "too_many_accounts");
        assert!(c.state.account(&newcomer).is_none());
        assert_eq!(
            c.state.account(&sender).expect("exists").balance,
            sender_balance
        );
        assert_eq!(c.state.accounts.len(), MAX_ACCOUNTS);
        let existing = account_of(&user_key(1));
        let balance = c.state.account(&existing).expect("exists").balance;
        c.exec(
            &user_key(0),
            Command::Transfer {
                to: existing,
                amount: Amount(1),
            },
        )
        .expect("a transfer to an existing account is not limited");
        assert_eq!(
            c.state.account(&existing).expect("exists").balance.0,
            balance.0 + 1
        );
    }
}
