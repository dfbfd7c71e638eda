//! The generated inputs: model operations (valid ones, and writes the model
//! must refuse) with the caller's clock steps, and the proptest
//! configuration every property runs with.

use core_sync::model::*;
use proptest::prelude::*;

/// The time every generated document is created at.
pub(crate) const T0: Millis = 1_700_000_000_000;

/// One call of the model's write API, with existing messages and versions
/// chosen by index modulo their count.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    AppendUser {
        text: String,
    },
    AppendToolRequest {
        tool: String,
        input: Option<usize>,
        scale: Option<u32>,
    },
    Update {
        msg: usize,
        status: Option<MessageStatus>,
        progress: Option<f64>,
        error: Option<(String, String)>,
        operation_id: Option<String>,
        output: Option<usize>,
    },
    AddVersion {
        blob: BlobRef,
        thumbnail: Option<BlobRef>,
        parent: Option<usize>,
        by_message: Option<usize>,
    },
    /// `set_active_version` to an existing version (unknown when there is none).
    Rollback {
        version: usize,
    },
    RecordCost {
        units: f64,
        cost_nano_usd: i64,
        message: Option<usize>,
    },
    SetTitle {
        title: String,
    },
    /// A write the model must refuse whatever the document holds.
    Refused(Bad),
}

#[derive(Debug, Clone)]
pub(crate) enum Bad {
    UpdateUnknownMessage,
    UnknownOutputVersion { msg: usize },
    RollbackToUnknownVersion,
    MalformedBlobSha,
    MalformedThumbnailSha,
    UnknownParentVersion,
    UnknownCreatingMessage,
    NegativeCost,
    NonFiniteUnits,
    ParamsNotAnObject,
    ToolRequestWithoutTool,
    MessageWithoutKind,
}

pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z ]{0,12}", 1 => "\\PC{0,8}"]
}

fn status() -> impl Strategy<Value = MessageStatus> {
    prop::sample::select(MessageStatus::ALL.to_vec())
}

/// Mostly valid progress values, some the model must refuse.
fn progress() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..=1.0f64,
        1 => Just(1.0),
        1 => prop::sample::select(vec![-0.25, 1.5, f64::NAN, f64::INFINITY]),
    ]
}

fn blob() -> impl Strategy<Value = BlobRef> {
    (
        any::<[u8; 32]>(),
        prop::sample::select(vec!["image/png", "image/jpeg", "image/webp"]),
        any::<u32>(),
        any::<u32>(),
        0u64..(1 << 40),
    )
        .prop_map(|(sha, mime, width, height, bytes)| BlobRef {
            sha256: sha.iter().map(|b| format!("{b:02x}")).collect(),
            mime: mime.into(),
            width,
            height,
            bytes,
        })
}

fn bad() -> impl Strategy<Value = Bad> {
    prop_oneof![
        Just(Bad::UpdateUnknownMessage),
        any::<usize>().prop_map(|msg| Bad::UnknownOutputVersion { msg }),
        Just(Bad::RollbackToUnknownVersion),
        Just(Bad::MalformedBlobSha),
        Just(Bad::MalformedThumbnailSha),
        Just(Bad::UnknownParentVersion),
        Just(Bad::UnknownCreatingMessage),
        Just(Bad::NegativeCost),
        Just(Bad::NonFiniteUnits),
        Just(Bad::ParamsNotAnObject),
        Just(Bad::ToolRequestWithoutTool),
        Just(Bad::MessageWithoutKind),
    ]
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    use proptest::option::of;
    prop_oneof![
        4 => text().prop_map(|text| Op::AppendUser { text }),
        3 => (
            prop::sample::select(vec!["upscale", "edit", "generate"]),
            of(any::<usize>()),
            of(1u32..8),
        )
            .prop_map(|(tool, input, scale)| Op::AppendToolRequest {
                tool: tool.into(),
                input,
                scale,
            }),
        6 => (
            any::<usize>(),
            of(status()),
            of(progress()),
            of(("[a-z_]{1,8}", text())),
            of("[a-z0-9]{1,8}"),
            of(any::<usize>()),
        )
            .prop_map(|(msg, status, progress, error, operation_id, output)| Op::Update {
                msg,
                status,
                progress,
                error,
                operation_id,
                output,
            }),
        3 => (blob(), of(blob()), of(any::<usize>()), of(any::<usize>())).prop_map(
            |(blob, thumbnail, parent, by_message)| Op::AddVersion {
                blob,
                thumbnail,
                parent,
                by_message,
            }
        ),
        2 => any::<usize>().prop_map(|version| Op::Rollback { version }),
        2 => (0.0..1000.0f64, 0i64..1_000_000_000_000, of(any::<usize>())).prop_map(
            |(units, cost_nano_usd, message)| Op::RecordCost {
                units,
                cost_nano_usd,
                message,
            }
        ),
        1 => text().prop_map(|title| Op::SetTitle { title }),
        1 => bad().prop_map(Op::Refused),
    ]
}

/// An operation and how far the caller's clock moved before it (sometimes
/// backwards: clocks of devices are not to be trusted).
pub(crate) fn timed_ops(max: usize) -> impl Strategy<Value = Vec<(Op, i64)>> {
    prop::collection::vec((op(), -3i64..60), 0..=max)
}

/// `cases` cases, shrinking far enough to reach small counterexamples, and
/// no regression files written next to the tests.
pub(crate) fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
