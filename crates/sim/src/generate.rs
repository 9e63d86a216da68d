//! What each choice says, one engine tick at a time: text with stop strings and
//! end-of-sequence, or a tool call streamed as a name then argument fragments.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::api::render::Finish;
use crate::api::request::ToolCallPlan;
use crate::engine::SeqHandle;
use crate::tokenizer::Generator;

/// Everything a choice needs to run.
#[derive(Debug, Clone)]
pub struct ChoicePlan {
    /// The choice's index in the response.
    pub index: u32,
    /// Which prompt of the request it answers.
    pub prompt_index: usize,
    /// That prompt's tokens.
    pub prompt_tokens: u32,
    /// Most tokens to generate (already clamped to the context).
    pub max_tokens: u32,
    /// Seed of its text.
    pub seed: u64,
    /// Stop strings.
    pub stop: Arc<[String]>,
    /// A tool call to make instead of text.
    pub tool: Option<Arc<ToolCallPlan>>,
    /// Chance of end-of-sequence per token (0 with `ignore_eos`).
    pub eos_probability: f64,
    /// Chance that a token's text is empty.
    pub partial_token_probability: f64,
}

/// How a choice ended, with vLLM's timestamps.
#[derive(Debug, Clone)]
pub struct ChoiceDone {
    /// Finish reason and stop string.
    pub finish: Finish,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// First scheduling.
    pub scheduled: Instant,
    /// First token.
    pub first_token: Instant,
    /// Last token.
    pub last_token: Instant,
}

/// What one tick produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// Text to append (possibly empty while a stop string might be forming).
    Text(String),
    /// A tool call starts.
    ToolStart {
        /// `chatcmpl-tool-…`.
        id: String,
        /// The function.
        name: String,
    },
    /// More of the tool call's arguments.
    ToolArgs(String),
    /// Nothing to show (the closing token of a tool call).
    Empty,
}

/// One tick of a choice.
#[derive(Debug, Clone)]
pub struct Step {
    /// The choice index.
    pub index: u32,
    /// What to send.
    pub delta: Delta,
    /// Set on the last step.
    pub done: Option<ChoiceDone>,
}

/// Runs one choice against the engine.
#[derive(Debug)]
pub struct ChoiceRunner {
    plan: ChoicePlan,
    handle: Option<SeqHandle>,
    generator: Generator,
    generated: u32,
    text: String,
    emitted: usize,
    tool_fragments: Vec<String>,
    tool_next: usize,
    first_token: Option<Instant>,
}

impl ChoiceRunner {
    /// A runner for `plan` driven by `handle`.
    pub fn new(plan: ChoicePlan, handle: SeqHandle) -> ChoiceRunner {
        let mut generator = Generator::new(plan.seed, plan.eos_probability)
            .with_partial_tokens(plan.partial_token_probability);
        let tool_fragments = match &plan.tool {
            Some(tool) => fragments(&arguments(&tool.parameters, &mut generator)),
            None => Vec::new(),
        };
        ChoiceRunner {
            plan,
            handle: Some(handle),
            generator,
            generated: 0,
            text: String::new(),
            emitted: 0,
            tool_fragments,
            tool_next: 0,
            first_token: None,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &ChoicePlan {
        &self.plan
    }

    /// The next step; `None` once the choice is over (or the engine stopped).
    pub async fn next(&mut self) -> Option<Step> {
        let handle = self.handle.as_mut()?;
        let tick = handle.next_tick().await?;
        self.generated += 1;
        let first = *self.first_token.get_or_insert(tick.at);
        let at_limit = self.generated >= self.plan.max_tokens;
        let (delta, finish) = match &self.plan.tool {
            Some(tool) => self.tool_step(tool.clone(), at_limit),
            None => self.text_step(at_limit),
        };
        let done = finish.map(|finish| ChoiceDone {
            finish,
            completion_tokens: self.generated,
            scheduled: tick.scheduled,
            first_token: first,
            last_token: tick.at,
        });
        if done.is_some()
            && let Some(h) = self.handle.take()
        {
            h.finish();
        }
        Some(Step {
            index: self.plan.index,
            delta,
            done,
        })
    }

    fn tool_step(&mut self, tool: Arc<ToolCallPlan>, at_limit: bool) -> (Delta, Option<Finish>) {
        let length = || {
            Some(Finish {
                reason: "length",
                stop_reason: None,
            })
        };
        if self.generated == 1 {
            let id = format!(
                "chatcmpl-tool-{:016x}",
                self.plan.seed ^ 0x5bd1_e995_0000_0000
            );
            let finish = if at_limit { length() } else { None };
            return (
                Delta::ToolStart {
                    id,
                    name: tool.name.clone(),
                },
                finish,
            );
        }
        match self.tool_fragments.get(self.tool_next) {
            Some(fragment) => {
                self.tool_next += 1;
                let finish = if at_limit { length() } else { None };
                (Delta::ToolArgs(fragment.clone()), finish)
            }
            None => (
                Delta::Empty,
                Some(Finish {
                    reason: "tool_calls",
                    stop_reason: None,
                }),
            ),
        }
    }

    fn text_step(&mut self, at_limit: bool) -> (Delta, Option<Finish>) {
        let Some(piece) = self.generator.next_token() else {
            // End of sequence: whatever was held back goes out now.
            let rest = self.text.get(self.emitted..).unwrap_or_default().to_owned();
            self.emitted = self.text.len();
            return (
                Delta::Text(rest),
                Some(Finish {
                    reason: "stop",
                    stop_reason: None,
                }),
            );
        };
        let search_from = self.emitted.saturating_sub(max_len(&self.plan.stop));
        self.text.push_str(piece);
        let hit = self
            .plan
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                let from = floor_char_boundary(&self.text, search_from);
                self.text
                    .get(from..)?
                    .find(s.as_str())
                    .map(|p| (from + p, s.clone()))
            })
            .min_by_key(|(p, _)| *p);
        if let Some((pos, stop)) = hit {
            let out = self
                .text
                .get(self.emitted..pos.max(self.emitted))
                .unwrap_or_default()
                .to_owned();
            self.emitted = pos.max(self.emitted);
            return (
                Delta::Text(out),
                Some(Finish {
                    reason: "stop",
                    stop_reason: Some(stop),
                }),
            );
        }
        if at_limit {
            let out = self.text.get(self.emitted..).unwrap_or_default().to_owned();
            self.emitted = self.text.len();
            return (
                Delta::Text(out),
                Some(Finish {
                    reason: "length",
                    stop_reason: None,
                }),
            );
        }
        // Hold back what could still become a stop string.
        let hold = max_len(&self.plan.stop).saturating_sub(1);
        let safe =
            floor_char_boundary(&self.text, self.text.len().saturating_sub(hold)).max(self.emitted);
        let out = self
            .text
            .get(self.emitted..safe)
            .unwrap_or_default()
            .to_owned();
        self.emitted = safe;
        (Delta::Text(out), None)
    }
}

fn max_len(stop: &[String]) -> usize {
    stop.iter().map(String::len).max().unwrap_or(0)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Arguments for a tool call that follow its JSON schema, deterministically.
fn arguments(schema: &Value, g: &mut Generator) -> String {
    fn value(schema: &Value, g: &mut Generator, depth: usize) -> Value {
        match schema.get("type").and_then(Value::as_str) {
            Some("integer") => Value::from(g.usize(1..=30) as u64),
            Some("number") => Value::from(g.usize(0..=1000) as f64 / 10.0),
            Some("boolean") => Value::from(g.usize(0..=1) == 1),
            Some("array") if depth < 3 => {
                let item = schema.get("items").cloned().unwrap_or(Value::Null);
                Value::Array(
                    (0..g.usize(1..=2))
                        .map(|_| value(&item, g, depth + 1))
                        .collect(),
                )
            }
            Some("object") if depth < 3 => {
                let mut map = serde_json::Map::new();
                if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                    for (k, v) in props {
                        map.insert(k.clone(), value(v, g, depth + 1));
                    }
                }
                Value::Object(map)
            }
            _ => {
                if let Some(options) = schema.get("enum").and_then(Value::as_array)
                    && let Some(v) = options.get(g.usize(0..=options.len().saturating_sub(1)))
                {
                    return v.clone();
                }
                let word: String = (0..2).filter_map(|_| g.next_token()).collect();
                Value::from(word.trim().to_owned())
            }
        }
    }
    let args = value(schema, g, 0);
    let args = if args.is_object() {
        args
    } else {
        Value::Object(serde_json::Map::new())
    };
    serde_json::to_string(&args).unwrap_or_else(|_| "{}".to_owned())
}

/// Splits arguments into fragments of about six characters, on character boundaries.
fn fragments(args: &str) -> Vec<String> {
    let chars: Vec<char> = args.chars().collect();
    chars.chunks(6).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::engine::Engine;

    fn plan(max_tokens: u32, stop: &[&str]) -> ChoicePlan {
        ChoicePlan {
            index: 0,
            prompt_index: 0,
            prompt_tokens: 5,
            max_tokens,
            seed: 42,
            stop: stop
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>()
                .into(),
            tool: None,
            eos_probability: 0.0,
            partial_token_probability: 0.0,
        }
    }

    async fn run(plan: ChoicePlan) -> (String, ChoiceDone, usize) {
        let engine = Engine::start(EngineConfig::default(), true);
        let handle = engine.submit(plan.prompt_tokens, plan.max_tokens, Instant::now());
        let mut r = ChoiceRunner::new(plan, handle);
        let mut text = String::new();
        let mut steps = 0;
        while let Some(step) = r.next().await {
            steps += 1;
            if let Delta::Text(t) = step.delta {
                text.push_str(&t);
            }
            if let Some(done) = step.done {
                return (text, done, steps);
            }
        }
        panic!("no finish")
    }

    #[tokio::test]
    async fn length_finish_emits_one_step_per_token() {
        let (text, done, steps) = run(plan(8, &[])).await;
        assert_eq!(done.finish.reason, "length");
        assert_eq!(done.completion_tokens, 8);
        assert_eq!(steps, 8);
        assert!(!text.is_empty());
        let (again, _, _) = run(plan(8, &[])).await;
        assert_eq!(text, again, "deterministic");
    }

    #[tokio::test]
    async fn stop_strings_cut_the_text_and_are_reported() {
        let (full, _, _) = run(plan(40, &[])).await;
        let stop = "e";
        let (text, done, _) = run(plan(40, &[stop])).await;
        assert_eq!(done.finish.reason, "stop");
        assert_eq!(done.finish.stop_reason.as_deref(), Some(stop));
        assert_eq!(text, full[..full.find(stop).unwrap()]);
    }

    #[tokio::test]
    async fn tool_calls_stream_name_then_arguments() {
        let mut p = plan(100, &[]);
        p.tool = Some(Arc::new(ToolCallPlan {
            name: "get_weather".into(),
            parameters: serde_json::json!({"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}),
        }));
        let engine = Engine::start(EngineConfig::default(), true);
        let mut r = ChoiceRunner::new(p.clone(), engine.submit(5, 100, Instant::now()));
        let mut args = String::new();
        let mut name = None;
        let mut finish = None;
        while let Some(step) = r.next().await {
            match step.delta {
                Delta::ToolStart { name: n, id } => {
                    assert!(id.starts_with("chatcmpl-tool-"));
                    name = Some(n);
                }
                Delta::ToolArgs(a) => args.push_str(&a),
                _ => {}
            }
            if let Some(d) = step.done {
                finish = Some(d.finish.reason);
                break;
            }
        }
        assert_eq!(name.as_deref(), Some("get_weather"));
        assert_eq!(finish, Some("tool_calls"));
        let v: Value = serde_json::from_str(&args).unwrap();
        assert!(v["city"].is_string() && v["days"].is_u64(), "{args}");
    }
}
