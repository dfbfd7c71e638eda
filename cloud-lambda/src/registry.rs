//! The model registry: which provider models exist, which tools they serve,
//! what they cost and whether they are still alive. The data lives in
//! `cloud-lambda/models.json` (compiled in; `ATELIER_MODELS_FILE` points at
//! another copy), not in code: providers retire models and change prices
//! more often than we ship.
//!
//! Pricing turns a provider's own usage numbers into integer nano-dollars,
//! so sums are exact and match to the cent.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The compiled-in registry.
pub const BUILTIN: &str = include_str!("../models.json");

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Model {
    pub id: String,
    pub label: String,
    pub provider: Provider,
    pub api: Api,
    /// Replicate community models are addressed by version.
    #[serde(default)]
    pub version: Option<String>,
    pub tools: Vec<Tool>,
    pub status: Status,
    #[serde(default)]
    pub retired_on: Option<String>,
    #[serde(default)]
    pub replacement: Option<String>,
    pub price: Price,
    /// How large an input image may be, inline and uploaded (models whose
    /// tools take an input image must say).
    #[serde(default)]
    pub inputs: Option<InputLimits>,
    /// Gemini image models: the tokens Google bills per input image and per
    /// output image at each `imageSize`.
    #[serde(default)]
    pub image_tokens: Option<ImageTokens>,
}

/// Input image size limits of a model, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InputLimits {
    /// Largest image sent inside the request (Gemini `inline_data`, a
    /// Replicate data URL); larger ones are uploaded.
    pub inline_max_bytes: u64,
    /// Largest image the provider's upload accepts.
    pub upload_max_bytes: u64,
    /// Where the limits come from.
    #[serde(default)]
    pub note: Option<String>,
}

/// Tokens Google bills for images on a Gemini image model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageTokens {
    /// Prompt tokens per input image.
    pub input_per_image: u64,
    /// Output tokens per generated image, by `imageSize` ("512", "1K",
    /// "2K", "4K"); without one the model makes "1K".
    pub output: BTreeMap<String, u64>,
}

impl ImageTokens {
    /// Output tokens of one image at `image_size` (default "1K").
    pub fn output_for(&self, image_size: Option<&str>) -> Option<u64> {
        self.output.get(image_size.unwrap_or("1K")).copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Google,
    Replicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Api {
    #[serde(rename = "generateContent")]
    GenerateContent,
    #[serde(rename = "predict")]
    Predict,
    #[serde(rename = "predictions")]
    Predictions,
}

/// What a user asks for in the composer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// Edit the active image with a prompt.
    Edit,
    /// Text to image.
    Generate,
    RemoveBackground,
    Upscale,
}

impl Tool {
    pub const ALL: [Tool; 4] = [
        Tool::Edit,
        Tool::Generate,
        Tool::RemoveBackground,
        Tool::Upscale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Edit => "edit",
            Tool::Generate => "generate",
            Tool::RemoveBackground => "remove-background",
            Tool::Upscale => "upscale",
        }
    }

    pub fn parse(s: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the tool works on an input image.
    pub fn needs_input(self) -> bool {
        !matches!(self, Tool::Generate)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Retired,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Price {
    /// Gemini: prompt tokens and image output tokens, per million.
    Tokens {
        input_usd_per_mtok: f64,
        output_image_usd_per_mtok: f64,
        verified: bool,
        #[serde(default)]
        sources: Vec<Source>,
    },
    /// Imagen: per generated image.
    PerImage {
        usd: f64,
        verified: bool,
        #[serde(default)]
        sources: Vec<Source>,
    },
    /// Replicate community models: `metrics.predict_time` x hardware rate.
    PerSecond {
        hardware: String,
        usd_per_second: f64,
        verified: bool,
        #[serde(default)]
        sources: Vec<Source>,
    },
    /// Replicate official models: per output.
    PerOutput {
        usd: f64,
        verified: bool,
        #[serde(default)]
        sources: Vec<Source>,
    },
}

/// Where a figure of the registry was read, and when.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Source {
    /// The figures this source gives, in words.
    pub figures: String,
    pub url: String,
    /// The day it was read (YYYY-MM-DD).
    pub read_on: String,
    /// `true` when the page is the provider's own; `false` for a page that
    /// quotes it (said so, never silently).
    pub provider_page: bool,
    #[serde(default)]
    pub note: Option<String>,
}

impl Price {
    /// Whether the price was checked against a source.
    pub fn verified(&self) -> bool {
        match self {
            Price::Tokens { verified, .. }
            | Price::PerImage { verified, .. }
            | Price::PerSecond { verified, .. }
            | Price::PerOutput { verified, .. } => *verified,
        }
    }

    /// Where the price was read.
    pub fn sources(&self) -> &[Source] {
        match self {
            Price::Tokens { sources, .. }
            | Price::PerImage { sources, .. }
            | Price::PerSecond { sources, .. }
            | Price::PerOutput { sources, .. } => sources,
        }
    }
}

/// What a provider reported using, in its own terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Usage {
    Tokens { prompt: u64, image_output: u64 },
    Images(u64),
    Seconds(f64),
    Outputs(u64),
}

/// A priced usage: what the cost event records.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    pub units: f64,
    pub unit: &'static str,
    pub nano_usd: i64,
}

const NANO: f64 = 1e9;

impl Price {
    /// The cost of `usage`, or `None` if the usage does not fit the price
    /// (a provider answering in units we did not expect).
    pub fn cost(&self, usage: Usage) -> Option<Cost> {
        let round = |usd: f64| (usd * NANO).round() as i64;
        match (self, usage) {
            (
                Price::Tokens {
                    input_usd_per_mtok,
                    output_image_usd_per_mtok,
                    ..
                },
                Usage::Tokens {
                    prompt,
                    image_output,
                },
            ) => {
                // Per-token rates in nano-dollars are exact for the published prices.
                let input = (input_usd_per_mtok * 1e3).round() as i64 * prompt as i64;
                let output = (output_image_usd_per_mtok * 1e3).round() as i64 * image_output as i64;
                Some(Cost {
                    units: (prompt + image_output) as f64,
                    unit: "tokens",
                    nano_usd: input + output,
                })
            }
            (Price::PerImage { usd, .. }, Usage::Images(n)) => Some(Cost {
                units: n as f64,
                unit: "images",
                nano_usd: round(*usd) * n as i64,
            }),
            (Price::PerSecond { usd_per_second, .. }, Usage::Seconds(s))
                if s.is_finite() && s >= 0.0 =>
            {
                Some(Cost {
                    units: s,
                    unit: "seconds",
                    nano_usd: round(usd_per_second * s),
                })
            }
            (Price::PerOutput { usd, .. }, Usage::Outputs(n)) => Some(Cost {
                units: n as f64,
                unit: "outputs",
                nano_usd: round(*usd) * n as i64,
            }),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("model registry does not parse: {0}")]
    Parse(String),
    #[error("unknown model {0:?}")]
    Unknown(String),
    #[error("{model} was retired{on}; use {replacement} instead")]
    Retired {
        model: String,
        on: String,
        replacement: String,
    },
    #[error("{model} cannot {tool}")]
    WrongTool { model: String, tool: &'static str },
}

#[derive(Debug, Clone)]
pub struct Registry {
    models: BTreeMap<String, Model>,
    /// Ids in the file's order: the order models are offered in (the
    /// first active one for a tool is its default).
    order: Vec<String>,
}

#[derive(Deserialize)]
struct File {
    models: Vec<Model>,
}

impl Registry {
    pub fn parse(json: &str) -> Result<Registry, RegistryError> {
        let file: File =
            serde_json::from_str(json).map_err(|e| RegistryError::Parse(e.to_string()))?;
        let mut models = BTreeMap::new();
        let order = file.models.iter().map(|m| m.id.clone()).collect();
        for m in file.models {
            if m.status == Status::Retired && m.replacement.is_none() {
                return Err(RegistryError::Parse(format!(
                    "retired model {} names no replacement",
                    m.id
                )));
            }
            if m.status == Status::Active
                && m.tools.iter().any(|t| t.needs_input())
                && m.inputs.is_none()
            {
                return Err(RegistryError::Parse(format!(
                    "{} takes an input image but gives no input limits",
                    m.id
                )));
            }
            // Google's prices are checked figure by figure, each with its
            // dated source.
            if m.status == Status::Active
                && m.provider == Provider::Google
                && (!m.price.verified() || m.price.sources().is_empty())
            {
                return Err(RegistryError::Parse(format!(
                    "{}'s price is not checked against a dated source",
                    m.id
                )));
            }
            if models.insert(m.id.clone(), m).is_some() {
                return Err(RegistryError::Parse("a model id appears twice".into()));
            }
        }
        Ok(Registry { models, order })
    }

    /// The compiled-in registry, or the file `ATELIER_MODELS_FILE` names.
    pub fn load() -> Result<Registry, RegistryError> {
        match std::env::var("ATELIER_MODELS_FILE") {
            Ok(path) => {
                let json = std::fs::read_to_string(&path)
                    .map_err(|e| RegistryError::Parse(format!("{path}: {e}")))?;
                Registry::parse(&json)
            }
            Err(_) => Registry::parse(BUILTIN),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.get(id)
    }

    /// Every model, in the file's order.
    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.order.iter().filter_map(|id| self.models.get(id))
    }

    /// The model to run `tool` with: refused before any request if it is
    /// unknown, retired (naming the replacement) or cannot do the tool.
    pub fn resolve(&self, id: &str, tool: Tool) -> Result<&Model, RegistryError> {
        let m = self
            .get(id)
            .ok_or_else(|| RegistryError::Unknown(id.to_owned()))?;
        if m.status == Status::Retired {
            return Err(RegistryError::Retired {
                model: m.id.clone(),
                on: m
                    .retired_on
                    .as_deref()
                    .map(|d| format!(" on {d}"))
                    .unwrap_or_default(),
                replacement: m.replacement.clone().unwrap_or_default(),
            });
        }
        if !m.tools.contains(&tool) {
            return Err(RegistryError::WrongTool {
                model: m.id.clone(),
                tool: tool.as_str(),
            });
        }
        Ok(m)
    }

    /// The first active model for a tool (the composer's default).
    pub fn default_for(&self, tool: Tool) -> Option<&Model> {
        self.models()
            .find(|m| m.status == Status::Active && m.tools.contains(&tool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_registry_parses_and_retires_by_name() {
        let r = Registry::parse(BUILTIN).unwrap();
        assert!(r.resolve("gemini-3.1-flash-image", Tool::Edit).is_ok());
        let e = r.resolve("gemini-2.5-flash-image", Tool::Edit).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gemini-2.5-flash-image was retired on 2026-10-02; use gemini-3.1-flash-image instead"
        );
        assert!(matches!(
            r.resolve("imagen-4.0-generate-001", Tool::Generate),
            Err(RegistryError::Retired { .. })
        ));
        assert!(matches!(
            r.resolve("nightmareai/real-esrgan", Tool::Edit),
            Err(RegistryError::WrongTool { .. })
        ));
        assert!(matches!(
            r.resolve("nope", Tool::Edit),
            Err(RegistryError::Unknown(_))
        ));
        for tool in Tool::ALL {
            assert!(
                r.default_for(tool).is_some(),
                "{tool:?} has an active model"
            );
        }
    }

    #[test]
    fn prices_follow_the_providers_usage_to_the_nano_dollar() {
        let r = Registry::parse(BUILTIN).unwrap();
        // providers.md: 264 prompt tokens, 1290 image tokens on 2.5 Flash Image.
        let gemini = &r.get("gemini-2.5-flash-image").unwrap().price;
        let c = gemini
            .cost(Usage::Tokens {
                prompt: 264,
                image_output: 1290,
            })
            .unwrap();
        assert_eq!(c.nano_usd, 264 * 300 + 1290 * 30_000);
        assert_eq!(c.nano_usd, 38_779_200); // $0.0387792
        let imagen = &r.get("imagen-4.0-ultra-generate-001").unwrap().price;
        assert_eq!(imagen.cost(Usage::Images(2)).unwrap().nano_usd, 120_000_000);
        let esrgan = &r.get("nightmareai/real-esrgan").unwrap().price;
        assert_eq!(
            esrgan.cost(Usage::Seconds(0.012683)).unwrap().nano_usd,
            2_854
        );
        assert_eq!(
            esrgan.cost(Usage::Images(1)),
            None,
            "wrong units are refused"
        );
        assert_eq!(esrgan.cost(Usage::Seconds(f64::NAN)), None);
    }

    #[test]
    fn active_gemini_prices_match_googles_token_counts_with_dated_sources() {
        let r = Registry::parse(BUILTIN).unwrap();
        // (model, imageSize, output tokens, nano-dollars of one output image,
        //  input image tokens)
        let table = [
            ("gemini-3.1-flash-image", "512", 747, 44_820_000, 1120),
            ("gemini-3.1-flash-image", "1K", 1120, 67_200_000, 1120),
            ("gemini-3.1-flash-image", "2K", 1680, 100_800_000, 1120),
            ("gemini-3.1-flash-image", "4K", 2520, 151_200_000, 1120),
            ("gemini-3-pro-image", "1K", 1120, 134_400_000, 560),
            ("gemini-3-pro-image", "2K", 1120, 134_400_000, 560),
            ("gemini-3-pro-image", "4K", 2000, 240_000_000, 560),
        ];
        for (id, size, tokens, nano, input) in table {
            let m = r.get(id).unwrap();
            let t = m.image_tokens.as_ref().unwrap();
            assert_eq!(t.output_for(Some(size)), Some(tokens), "{id} {size}");
            assert_eq!(t.input_per_image, input, "{id}");
            let cost = m
                .price
                .cost(Usage::Tokens {
                    prompt: 0,
                    image_output: tokens,
                })
                .unwrap();
            assert_eq!(cost.nano_usd, nano, "{id} {size}");
        }
        for m in r
            .models()
            .filter(|m| m.provider == Provider::Google && m.status == Status::Active)
        {
            assert!(m.price.verified(), "{}", m.id);
            let sources = m.price.sources();
            assert!(
                sources.iter().any(|s| s.provider_page),
                "{}: at least one figure from Google's own page",
                m.id
            );
            for s in sources {
                assert!(s.url.starts_with("https://"), "{}", s.url);
                assert_eq!(s.read_on.len(), 10, "YYYY-MM-DD: {}", s.read_on);
                assert!(
                    s.provider_page || s.note.is_some() || sources.iter().any(|o| o.note.is_some()),
                    "{}: a quoted figure says so",
                    m.id
                );
            }
            let limits = m.inputs.as_ref().unwrap();
            assert_eq!(limits.inline_max_bytes, 7_000_000, "{}", m.id);
        }
    }

    #[test]
    fn a_registry_without_sources_or_input_limits_is_refused() {
        let unchecked = BUILTIN.replacen(
            r#""verified": true,
        "sources""#,
            r#""verified": false,
        "sources""#,
            1,
        );
        assert_ne!(unchecked, BUILTIN);
        assert!(matches!(
            Registry::parse(&unchecked),
            Err(RegistryError::Parse(m)) if m.contains("not checked")
        ));
        let no_limits = r#"{"models":[{"id":"x/y","label":"x","provider":"replicate","api":"predictions","tools":["upscale"],"status":"active","price":{"kind":"per_output","usd":1,"verified":false}}]}"#;
        assert!(matches!(
            Registry::parse(no_limits),
            Err(RegistryError::Parse(m)) if m.contains("input limits")
        ));
    }

    #[test]
    fn a_retired_model_without_replacement_is_a_bad_registry() {
        let bad = r#"{"models":[{"id":"x","label":"x","provider":"google","api":"predict","tools":["generate"],"status":"retired","price":{"kind":"per_image","usd":1,"verified":true}}]}"#;
        assert!(matches!(Registry::parse(bad), Err(RegistryError::Parse(_))));
    }
}
