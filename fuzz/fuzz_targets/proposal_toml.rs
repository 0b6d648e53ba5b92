//! The proposal file (`neuroshard nep create --file`, TOML):
//! `proposal_file::parse`.
//!
//! Checks: no panic; what parses is within `MAX_PROPOSAL_FILE_BYTES`;
//! `to_toml` parses back to the same content; content that validates is
//! within `MAX_NEP_CONTENT_BYTES` and a draft carrying it within
//! `MAX_COMMAND_BYTES` and admitted by `check_fields`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use neuroshard_governance::admission::{check_fields, encoded_len};
use neuroshard_governance::limits::{
    MAX_COMMAND_BYTES, MAX_NEP_CONTENT_BYTES, MAX_PROPOSAL_FILE_BYTES,
};
use neuroshard_governance::params::ParameterSet;
use neuroshard_governance::proposal_file;
use neuroshard_governance::testkit::user_key;
use neuroshard_governance::validation::{validate_content, validate_shape};
use neuroshard_governance::{Command, SignedCommand};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(content) = proposal_file::parse(text) else {
        return;
    };
    assert!(text.len() <= MAX_PROPOSAL_FILE_BYTES);
    let written = proposal_file::to_toml(&content);
    let back = proposal_file::parse(&written)
        .unwrap_or_else(|e| panic!("to_toml wrote what parse refuses: {e}\n{written}"));
    assert_eq!(
        back, content,
        "to_toml does not parse back to the same content"
    );

    let gov = ParameterSet::genesis_defaults().gov();
    if validate_content(&content, &gov).is_ok() {
        assert!(validate_shape(&content).is_ok());
        let len = postcard::to_stdvec(&content)
            .expect("content encodes")
            .len();
        assert!(
            len <= MAX_NEP_CONTENT_BYTES,
            "{len} > MAX_NEP_CONTENT_BYTES"
        );
        let emergency = content.nep_type.is_emergency();
        let command = if emergency {
            Command::SubmitEmergency { content }
        } else {
            Command::CreateDraft { content }
        };
        let signed = SignedCommand::sign("neuroshard-test", &user_key(0), 1, command);
        let len = encoded_len(&signed);
        assert!(len <= MAX_COMMAND_BYTES, "{len} > MAX_COMMAND_BYTES");
        if let Err(e) = check_fields(&signed, len) {
            panic!("valid content refused by admission: {e:?}");
        }
    }
});
