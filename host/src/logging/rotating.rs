//! A log file rotated as loguru's `rotation` says (by size, by interval, or at each hour /
//! day / week / month / year), keeping what `retention` says. tracing-appender only rotates
//! by time, and names files differently.
//!
//! As in loguru, the file keeps its name; on rotation it is renamed to
//! `<stem>.<YYYY-MM-DD_HH-mm-ss_ffffff><.ext>` and a new one is opened.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Datelike, Days, Local, Months, NaiveTime, TimeZone, Timelike};

/// When to rotate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rotation {
    /// Before a write would take the file over this many bytes.
    Size(u64),
    /// This long after the file was opened.
    Every(Duration),
    /// At the start of each calendar period (local time).
    At(Period),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// Which rotated files to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retention {
    /// The newest N.
    Count(usize),
    /// Those modified less than this long ago.
    Age(Duration),
}

/// The log file writer.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    /// When the current file must be rotated (time rules).
    deadline: Option<DateTime<Local>>,
    rotation: Option<Rotation>,
    retention: Option<Retention>,
}

impl RotatingFile {
    /// Opens (appending to) `path`, creating its folder.
    pub fn open(
        path: &Path,
        rotation: Option<Rotation>,
        retention: Option<Retention>,
    ) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        let mut writer = RotatingFile {
            path: path.to_owned(),
            file,
            size,
            deadline: None,
            rotation,
            retention,
        };
        writer.deadline = writer.next_deadline(Local::now());
        writer.apply_retention()?;
        Ok(writer)
    }

    fn next_deadline(&self, now: DateTime<Local>) -> Option<DateTime<Local>> {
        match self.rotation? {
            Rotation::Size(_) => None,
            Rotation::Every(every) => Some(now + chrono::Duration::from_std(every).ok()?),
            Rotation::At(period) => next_period_start(now, period),
        }
    }

    fn due(&self, incoming: usize) -> bool {
        match self.rotation {
            Some(Rotation::Size(limit)) => self.size > 0 && self.size + incoming as u64 > limit,
            Some(_) => self.deadline.is_some_and(|d| Local::now() >= d),
            None => false,
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let now = Local::now();
        let stamp = now.format("%Y-%m-%d_%H-%M-%S_%6f").to_string();
        let mut target = rotated_name(&self.path, &stamp);
        let mut n = 1;
        while target.exists() {
            n += 1;
            target = rotated_name(&self.path, &format!("{stamp}.{n}"));
        }
        std::fs::rename(&self.path, &target)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        self.deadline = self.next_deadline(now);
        self.apply_retention()
    }

    /// Deletes the rotated files `retention` does not keep.
    fn apply_retention(&self) -> io::Result<()> {
        let Some(retention) = self.retention else {
            return Ok(());
        };
        let mut rotated = self.rotated_files()?;
        rotated.sort_by_key(|file| std::cmp::Reverse(file.1));
        let now = SystemTime::now();
        for (i, (path, modified)) in rotated.iter().enumerate() {
            let keep = match retention {
                Retention::Count(n) => i < n,
                Retention::Age(age) => now.duration_since(*modified).unwrap_or_default() < age,
            };
            if !keep {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// The rotated files of this log, with their modification times.
    fn rotated_files(&self) -> io::Result<Vec<(PathBuf, SystemTime)>> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let (stem, ext) = stem_and_ext(&self.path);
        let prefix = format!("{stem}.");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rotated = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(&ext))
                .is_some_and(|stamp| {
                    stamp.len() >= 26 && stamp.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                });
            if rotated {
                out.push((entry.path(), entry.metadata()?.modified()?));
            }
        }
        Ok(out)
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.due(buf.len()) {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `logs/app.log` → (`app`, `.log`).
fn stem_and_ext(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

fn rotated_name(path: &Path, stamp: &str) -> PathBuf {
    let (stem, ext) = stem_and_ext(path);
    path.with_file_name(format!("{stem}.{stamp}{ext}"))
}

/// The start of the next hour / day / Monday / month / year after `now`.
fn next_period_start(now: DateTime<Local>, period: Period) -> Option<DateTime<Local>> {
    let midnight = |date: chrono::NaiveDate| {
        Local
            .from_local_datetime(&date.and_time(NaiveTime::MIN))
            .earliest()
    };
    let today = now.date_naive();
    match period {
        Period::Hour => {
            let hour = now.with_minute(0)?.with_second(0)?.with_nanosecond(0)?;
            Some(hour + chrono::Duration::hours(1))
        }
        Period::Day => midnight(today.checked_add_days(Days::new(1))?),
        Period::Week => {
            let days = 7 - u64::from(today.weekday().num_days_from_monday());
            midnight(today.checked_add_days(Days::new(days))?)
        }
        Period::Month => midnight(today.with_day(1)?.checked_add_months(Months::new(1))?),
        Period::Year => midnight(
            today
                .with_day(1)?
                .with_month(1)?
                .checked_add_months(Months::new(12))?,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/app.log");
        let mut log =
            RotatingFile::open(&path, Some(Rotation::Size(100)), Some(Retention::Count(2)))
                .unwrap();
        let line = [b'x'; 39];
        for _ in 0..12 {
            log.write_all(&line).unwrap();
            log.write_all(b"\n").unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        log.flush().unwrap();
        let names = files(&dir.path().join("logs"));
        // 12 lines of 40 bytes, two per 100-byte file: six files, the oldest three deleted.
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("app.log"));
        for name in &names {
            let len = std::fs::metadata(dir.path().join("logs").join(name))
                .unwrap()
                .len();
            assert!(len <= 100, "{name}: {len}");
            if name != "app.log" {
                assert!(
                    name.starts_with("app.20") && name.ends_with(".log"),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn an_interval_rotates_once_it_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut log = RotatingFile::open(
            &path,
            Some(Rotation::Every(Duration::from_millis(50))),
            None,
        )
        .unwrap();
        log.write_all(b"one\n").unwrap();
        log.write_all(b"two\n").unwrap();
        std::thread::sleep(Duration::from_millis(80));
        log.write_all(b"three\n").unwrap();
        assert_eq!(files(dir.path()).len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }

    #[test]
    fn calendar_periods() {
        let at = Local.with_ymd_and_hms(2026, 12, 31, 15, 30, 0).unwrap();
        let next = |p| next_period_start(at, p).unwrap().naive_local().to_string();
        assert_eq!(next(Period::Hour), "2026-12-31 16:00:00");
        assert_eq!(next(Period::Day), "2027-01-01 00:00:00");
        assert_eq!(next(Period::Week), "2027-01-04 00:00:00");
        assert_eq!(next(Period::Month), "2027-01-01 00:00:00");
        assert_eq!(next(Period::Year), "2027-01-01 00:00:00");
    }
}
