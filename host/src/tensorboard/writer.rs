//! One TensorBoard event file: scalars and text summaries, flushed as they are written so a
//! running TensorBoard shows training live.

use super::proto::{
    Dim, Event, PluginData, Summary, SummaryMetadata, SummaryValue, TensorProto, TensorShapeProto,
    Value, What, DT_STRING,
};
use super::record::write_record;
use prost::Message;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// An open `events.out.tfevents.*` file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Create `dir` and a new event file in it, named as TensorFlow names them (TensorBoard
    /// only needs `tfevents` in the name; the rest keeps files of parallel runs apart).
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = wall_time();
        let name = format!(
            "events.out.tfevents.{}.{}.{}.clarity",
            now as u64,
            hostname(),
            std::process::id()
        );
        let path = dir.join(name);
        let out = BufWriter::new(File::create(&path)?);
        let mut writer = Self { path, out };
        writer.write(Event {
            wall_time: now,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(writer)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars `(tag, value)` at `step`, in one event. Non-finite values are skipped:
    /// TensorBoard would draw them as gaps at best.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> io::Result<()> {
        let value = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(tag, v)| SummaryValue {
                tag: (*tag).to_string(),
                metadata: None,
                value: Some(Value::SimpleValue(*v as f32)),
            })
            .collect::<Vec<_>>();
        if value.is_empty() {
            return Ok(());
        }
        self.summary(step, value)
    }

    /// A Markdown text summary (TensorBoard's Text dashboard).
    pub fn text(&mut self, step: u64, tag: &str, markdown: &str) -> io::Result<()> {
        let value = SummaryValue {
            tag: tag.to_string(),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "text".into(),
                    content: Vec::new(),
                }),
                display_name: String::new(),
                summary_description: String::new(),
            }),
            value: Some(Value::Tensor(TensorProto {
                dtype: DT_STRING,
                tensor_shape: Some(TensorShapeProto {
                    dim: vec![Dim { size: 1 }],
                }),
                string_val: vec![markdown.as_bytes().to_vec()],
            })),
        };
        self.summary(step, vec![value])
    }

    /// Summary values built elsewhere (the HParams plugin's), in one event.
    pub fn summary(&mut self, step: u64, value: Vec<SummaryValue>) -> io::Result<()> {
        self.write(Event {
            wall_time: wall_time(),
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(What::Summary(Summary { value })),
        })
    }

    fn write(&mut self, event: Event) -> io::Result<()> {
        write_record(&mut self.out, &event.encode_to_vec())?;
        self.out.flush()
    }
}

/// Seconds since the Unix epoch, as event files count them.
pub fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host name without dots (they would split TensorBoard's file-name fields).
fn hostname() -> String {
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_default();
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::record::read_record;

    fn events(path: &Path) -> Vec<Event> {
        let bytes = std::fs::read(path).unwrap();
        let mut input = bytes.as_slice();
        let mut out = Vec::new();
        while let Some(record) = read_record(&mut input).unwrap() {
            out.push(Event::decode(record.as_slice()).unwrap());
        }
        out
    }

    #[test]
    fn a_file_holds_the_version_then_scalars_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(&dir.path().join("run")).unwrap();
        w.scalars(3, &[("train/loss", 0.5), ("train/lr", f64::NAN)])
            .unwrap();
        w.scalars(4, &[("skip", f64::INFINITY)]).unwrap();
        w.text(0, "config", "# hi").unwrap();
        let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");

        let events = events(w.path());
        assert_eq!(events.len(), 3, "the all-NaN event is not written");
        assert_eq!(
            events[0].what,
            Some(What::FileVersion("brain.Event:2".into()))
        );
        let Some(What::Summary(s)) = &events[1].what else {
            panic!("{:?}", events[1]);
        };
        assert_eq!(events[1].step, 3);
        assert_eq!(s.value.len(), 1, "NaN dropped");
        assert_eq!(s.value[0].tag, "train/loss");
        assert_eq!(s.value[0].value, Some(Value::SimpleValue(0.5)));
        let Some(What::Summary(t)) = &events[2].what else {
            panic!("{:?}", events[2]);
        };
        let Some(Value::Tensor(tensor)) = &t.value[0].value else {
            panic!("{t:?}");
        };
        assert_eq!(tensor.string_val, vec![b"# hi".to_vec()]);
    }
}
