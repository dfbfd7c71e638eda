//! The composer's choices: which tools exist, which models can run each
//! (from the model registry, retired ones left out), whether the provider
//! key a tool needs is present, and the tool request a send turns into.
//! No UI and no IO.

use cloud_lambda::registry::{Model, Provider, Registry, Status, Tool};
use core_sync::model::NewMessage;

/// The tools in the order the composer lists them.
pub const TOOLS: [Tool; 4] = [
    Tool::Edit,
    Tool::Generate,
    Tool::RemoveBackground,
    Tool::Upscale,
];

pub fn tool_label(tool: Tool) -> &'static str {
    match tool {
        Tool::Edit => "Edit with a prompt",
        Tool::Generate => "Text to image",
        Tool::RemoveBackground => "Remove background",
        Tool::Upscale => "Upscale",
    }
}

/// The short name a timeline card shows.
pub fn tool_title(tool: &str) -> String {
    match Tool::parse(tool) {
        Some(Tool::Edit) => "Edit".into(),
        Some(Tool::Generate) => "Generate".into(),
        Some(Tool::RemoveBackground) => "Remove background".into(),
        Some(Tool::Upscale) => "Upscale".into(),
        None => tool.to_owned(),
    }
}

pub fn provider_id(p: Provider) -> &'static str {
    match p {
        Provider::Google => "google",
        Provider::Replicate => "replicate",
    }
}

/// Which provider credentials the server that runs jobs has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// The embedded server: jobs run here, with these keys.
    Local { gemini: bool, replicate: bool },
    /// A remote server holds the keys; the app cannot tell.
    Remote,
    /// No server at all (`--offline`): requests wait in the queue.
    Offline,
}

impl Keys {
    fn missing(self, provider: Provider) -> Option<&'static str> {
        match (self, provider) {
            (Keys::Local { gemini: false, .. }, Provider::Google) => Some("GEMINI_API_KEY"),
            (
                Keys::Local {
                    replicate: false, ..
                },
                Provider::Replicate,
            ) => Some("REPLICATE_API_TOKEN"),
            _ => None,
        }
    }
}

/// What the user picked and typed in the composer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub tool: Tool,
    pub model_index: usize,
    pub prompt: String,
    /// "16:9" and so on; used by edit and generate.
    pub aspect: String,
    /// "4" or "2"; used by upscale.
    pub scale: String,
}

/// The composer's state as a view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposerVm {
    pub tool_labels: Vec<String>,
    pub tool_index: usize,
    pub model_labels: Vec<String>,
    pub model_index: usize,
    pub generate_model_labels: Vec<String>,
    pub show_aspect: bool,
    pub show_scale: bool,
    pub needs_prompt: bool,
    pub can_send: bool,
    /// Said plainly under the composer: a missing key, a missing image,
    /// offline queueing.
    pub notice: String,
}

/// Tool and model choices over a registry.
#[derive(Debug, Clone)]
pub struct Tools {
    registry: Registry,
    keys: Keys,
}

impl Tools {
    pub fn new(registry: Registry, keys: Keys) -> Tools {
        Tools { registry, keys }
    }

    /// The provider keys changed (settings).
    pub fn set_keys(&mut self, keys: Keys) {
        self.keys = keys;
    }

    /// Every model the registry knows: (id, label).
    pub fn model_labels(&self) -> Vec<(String, String)> {
        self.registry
            .models()
            .map(|m| (m.id.clone(), m.label.clone()))
            .collect()
    }

    /// The active models that can run `tool`, registry order.
    pub fn models(&self, tool: Tool) -> Vec<&Model> {
        self.registry
            .models()
            .filter(|m| m.status == Status::Active && m.tools.contains(&tool))
            .collect()
    }

    /// A model's label, or its id when the registry does not know it.
    pub fn model_label(&self, id: &str) -> String {
        self.registry
            .get(id)
            .map(|m| m.label.clone())
            .unwrap_or_else(|| id.to_owned())
    }

    /// The view of the composer with `tool` and `model_index` picked, for
    /// an asset that does or does not have an image yet.
    pub fn composer(&self, tool: Tool, model_index: usize, has_image: bool) -> ComposerVm {
        let models = self.models(tool);
        let model_index = model_index.min(models.len().saturating_sub(1));
        let model = models.get(model_index);
        let mut notice = String::new();
        let mut can_send = model.is_some();
        if let Some(key) = model.and_then(|m| self.keys.missing(m.provider)) {
            can_send = false;
            notice = format!(
                "{} needs {key}: set it in the environment and restart Atelier.",
                tool_title(tool.as_str())
            );
        } else if model.is_none() {
            notice = format!(
                "No model can {} right now.",
                tool_title(tool.as_str()).to_lowercase()
            );
        } else if tool.needs_input() && !has_image {
            can_send = false;
            notice = "This tool works on an image: upload one or generate one first.".into();
        } else if self.keys == Keys::Offline {
            notice = "Offline: requests wait in the queue until Atelier syncs.".into();
        }
        ComposerVm {
            tool_labels: TOOLS.iter().map(|t| tool_label(*t).to_owned()).collect(),
            tool_index: TOOLS.iter().position(|t| *t == tool).unwrap_or(0),
            model_labels: models.iter().map(|m| m.label.clone()).collect(),
            model_index,
            generate_model_labels: self
                .models(Tool::Generate)
                .iter()
                .map(|m| m.label.clone())
                .collect(),
            show_aspect: matches!(tool, Tool::Edit | Tool::Generate),
            show_scale: tool == Tool::Upscale,
            needs_prompt: matches!(tool, Tool::Edit | Tool::Generate),
            can_send,
            notice,
        }
    }

    /// The tool request a send makes, working on `active_version` when the
    /// tool needs an image. Errors are sentences for the user.
    pub fn request(
        &self,
        draft: &Draft,
        active_version: Option<&str>,
    ) -> Result<NewMessage, String> {
        let models = self.models(draft.tool);
        let model = models
            .get(draft.model_index)
            .or(models.first())
            .ok_or_else(|| format!("No model can {} right now.", draft.tool.as_str()))?;
        if let Some(key) = self.keys.missing(model.provider) {
            return Err(format!("{} needs {key}.", model.label));
        }
        let prompt = draft.prompt.trim();
        let mut params = serde_json::Map::new();
        match draft.tool {
            Tool::Edit | Tool::Generate => {
                if prompt.is_empty() {
                    return Err("Say what you want: the prompt is empty.".into());
                }
                if !draft.aspect.is_empty() {
                    params.insert("aspectRatio".into(), draft.aspect.clone().into());
                }
            }
            Tool::Upscale => {
                let scale: u32 = draft.scale.parse().unwrap_or(4);
                params.insert("scale".into(), scale.clamp(2, 4).into());
            }
            Tool::RemoveBackground => {}
        }
        let inputs = if draft.tool.needs_input() {
            let v = active_version
                .ok_or("This tool works on an image: upload one or generate one first.")?;
            vec![v.to_owned()]
        } else {
            Vec::new()
        };
        Ok(NewMessage {
            input_version_ids: inputs,
            params: Some(serde_json::Value::Object(params)),
            ..NewMessage::tool_request(
                draft.tool.as_str(),
                provider_id(model.provider),
                model.id.clone(),
                prompt,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core_sync::model::{MessageKind, MessageStatus};

    fn tools(keys: Keys) -> Tools {
        Tools::new(
            Registry::parse(cloud_lambda::registry::BUILTIN).unwrap(),
            keys,
        )
    }

    fn draft(tool: Tool, prompt: &str) -> Draft {
        Draft {
            tool,
            model_index: 0,
            prompt: prompt.into(),
            aspect: "16:9".into(),
            scale: "4".into(),
        }
    }

    #[test]
    fn retired_models_are_not_offered() {
        let t = tools(Keys::Remote);
        let generate: Vec<&str> = t
            .models(Tool::Generate)
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert!(generate.contains(&"gemini-3.1-flash-image"));
        assert!(
            !generate.iter().any(|id| id.starts_with("imagen-4.0")),
            "Imagen 4 is retired"
        );
        assert!(!generate.contains(&"gemini-2.5-flash-image"));
        assert_eq!(t.models(Tool::Upscale)[0].id, "nightmareai/real-esrgan");
    }

    #[test]
    fn a_missing_key_is_said_plainly_and_blocks_sending() {
        let t = tools(Keys::Local {
            gemini: false,
            replicate: true,
        });
        let vm = t.composer(Tool::Edit, 0, true);
        assert!(!vm.can_send);
        assert_eq!(
            vm.notice,
            "Edit needs GEMINI_API_KEY: set it in the environment and restart Atelier."
        );
        assert!(
            t.request(&draft(Tool::Edit, "brighter"), Some("v1"))
                .is_err()
        );
        let vm = t.composer(Tool::Upscale, 0, true);
        assert!(vm.can_send, "{vm:?}");
        assert!(vm.show_scale && !vm.show_aspect && !vm.needs_prompt);
    }

    #[test]
    fn image_tools_need_an_image() {
        let t = tools(Keys::Remote);
        let vm = t.composer(Tool::RemoveBackground, 0, false);
        assert!(!vm.can_send);
        assert!(vm.notice.contains("works on an image"));
        assert!(t.composer(Tool::Generate, 0, false).can_send);
        let offline = tools(Keys::Offline).composer(Tool::Generate, 0, false);
        assert!(offline.can_send && offline.notice.starts_with("Offline"));
    }

    #[test]
    fn sends_become_queued_tool_requests_with_parameters() {
        let t = tools(Keys::Remote);
        let m = t
            .request(&draft(Tool::Edit, " warmer light "), Some("v1"))
            .unwrap();
        assert_eq!(m.kind, Some(MessageKind::ToolRequest));
        assert_eq!(m.status, Some(MessageStatus::Queued));
        assert_eq!(m.tool.as_deref(), Some("edit"));
        assert_eq!(m.provider.as_deref(), Some("google"));
        assert_eq!(m.text.as_deref(), Some("warmer light"));
        assert_eq!(m.input_version_ids, vec!["v1".to_owned()]);
        assert_eq!(m.params.unwrap()["aspectRatio"], "16:9");

        let m = t.request(&draft(Tool::Upscale, ""), Some("v2")).unwrap();
        assert_eq!(m.params.unwrap()["scale"], 4);
        assert_eq!(m.provider.as_deref(), Some("replicate"));

        let m = t.request(&draft(Tool::Generate, "a fox"), None).unwrap();
        assert!(m.input_version_ids.is_empty());
        assert_eq!(
            t.request(&draft(Tool::Generate, "  "), None).unwrap_err(),
            "Say what you want: the prompt is empty."
        );
        assert!(t.request(&draft(Tool::Upscale, ""), None).is_err());
    }
}
