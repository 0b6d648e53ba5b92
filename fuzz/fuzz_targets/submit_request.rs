//! `Governance.Submit` as the API receives it: a `SubmitRequest` protobuf
//! carrying a `SignedCommand` as postcard or JSON, decoded as
//! `GovernanceService::decode_command` does, then admitted and applied
//! against a fixture state.
//!
//! Checks: no panic; a decoded postcard command is within
//! `MAX_COMMAND_BYTES`; postcard and JSON round-trip; `encoded_len` is the
//! encoder's length; an admission refusal is never applied successfully
//! and an identical retry is answered with its original outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

use neuroshard_fuzz::{fixture, Fixture};
use neuroshard_governance::admission::{self, Admitted};
use neuroshard_governance::limits::MAX_COMMAND_BYTES;
use neuroshard_governance::{Entry, SignedCommand};
use neuroshard_node::api_proto::submit_request::Command as Form;
use neuroshard_node::api_proto::SubmitRequest;
use neuroshard_node::transport::api_service::decode_command;

fuzz_target!(init: { fixture(); }, |data: &[u8]| {
    let Ok(request) = SubmitRequest::decode(data) else {
        return;
    };
    let (command, len) = match request.command {
        Some(Form::Postcard(bytes)) => {
            let Ok(command) = decode_command(&bytes) else {
                return;
            };
            assert!(bytes.len() <= MAX_COMMAND_BYTES);
            let again = postcard::to_stdvec(&command).expect("a decoded command encodes");
            assert!(again.len() <= bytes.len(), "the encoding is the shortest");
            assert_eq!(admission::encoded_len(&command), again.len());
            assert_eq!(
                decode_command(&again).expect("re-encoded command decodes"),
                command
            );
            (command, bytes.len())
        }
        Some(Form::Json(text)) => {
            let Ok(command) = serde_json::from_str::<SignedCommand>(&text) else {
                return;
            };
            let len = admission::encoded_len(&command);
            (command, len)
        }
        None => return,
    };
    let json = serde_json::to_string(&command).expect("a command writes as JSON");
    assert_eq!(
        serde_json::from_str::<SignedCommand>(&json).expect("its JSON reads back"),
        command
    );

    let fx = fixture();
    for view in [&fx.pending, &fx.certified] {
        let verdict = admission::admit(view, &command, len);
        let mut state = view.clone();
        let outcome = state.apply(Fixture::next_index(view), &Entry::Command(command.clone()));
        match verdict {
            Err(refusal) => assert!(
                outcome.is_err(),
                "admission refused ({refusal:?}) what apply accepted: {outcome:?}"
            ),
            Ok(Admitted::Retry { outcome: original, .. }) => assert_eq!(original, outcome),
            Ok(Admitted::New) => {}
        }
    }
});
