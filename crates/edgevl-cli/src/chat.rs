//! `edgevl chat`: a conversation on the terminal (line editing, history, streamed answers) or,
//! when stdin is not a terminal, one turn per input line so it can be scripted. stdout carries
//! only the answers and `/stats` JSON; prompts, notes and errors go to stderr (or the terminal).

use crate::run::{summary, GenArgs, ModelArgs};
use crate::vision_args::{describe, VisionArgs};
use anyhow::Context;
use clap::Args;
use edgevl_kernels::KernelConfig;
use edgevl_runtime::{Finish, Sampler, Session};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Arguments of `edgevl chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    gen: GenArgs,
    #[command(flatten)]
    vision: VisionArgs,
    /// An image for the first message (needs --mmproj); later ones with /image PATH.
    #[arg(long, value_name = "FILE")]
    image: Vec<std::path::PathBuf>,
    /// A system message to start every conversation with.
    #[arg(long, allow_hyphen_values = true)]
    system: Option<String>,
}

const HELP: &str = "commands: /image PATH (attach to the next message; encoding starts at once), /reset (new conversation), /stats (session stats as JSON), /help, /exit; Ctrl-C stops an answer, at the prompt it ends the chat (as Ctrl-D)";

/// What the loop does after a line.
enum Next {
    Continue,
    Exit,
}

/// Run `edgevl chat`.
pub fn run(a: &ChatArgs, kernels: KernelConfig) -> anyhow::Result<()> {
    let sampler = a.gen.sampler()?;
    let mut session = a.model.load_with_vision(&a.vision, kernels)?;
    if !session.has_chat_template() {
        eprintln!("edgevl: the model has no chat template; using ChatML");
    }
    for path in &a.image {
        let info = session.add_image(path)?;
        eprintln!("edgevl: {}", describe(&info));
    }
    // Ctrl-C during an answer (its images' wait included) stops the answer, a second one ends
    // the program; anywhere else (e.g. a scripted chat waiting on its input) the first ends it.
    // At the terminal prompt rustyline reads Ctrl-C as a key, which ends the chat there too (so
    // a second Ctrl-C after a stopped answer ends it). SIGTERM and SIGHUP end it as usual.
    let cancel = session.cancel_flag();
    let answering = Arc::new(AtomicBool::new(false));
    let busy = answering.clone();
    ctrlc::set_handler(move || {
        if !busy.load(Ordering::Relaxed) || cancel.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    let mut chat = Chat { session, sampler, args: a, answering };
    chat.start();
    if std::io::stdin().is_terminal() {
        chat.interactive()
    } else {
        chat.scripted()
    }
}

struct Chat<'a> {
    session: Session,
    sampler: Sampler,
    args: &'a ChatArgs,
    /// True while an answer is being generated (what Ctrl-C stops).
    answering: Arc<AtomicBool>,
}

impl Chat<'_> {
    /// Begin a conversation (after load and after /reset).
    fn start(&mut self) {
        if let Some(system) = &self.args.system {
            self.session.add_text("system", system);
        }
    }

    /// Terminal mode: rustyline on /dev/tty; errors of a turn are shown and the chat goes on.
    fn interactive(&mut self) -> anyhow::Result<()> {
        use rustyline::error::ReadlineError;
        let config = rustyline::Config::builder()
            .behavior(rustyline::Behavior::PreferTerm)
            .auto_add_history(true)
            .build();
        let mut editor = rustyline::DefaultEditor::with_config(config).context("cannot open the terminal")?;
        eprintln!("edgevl: {HELP}");
        loop {
            match editor.readline("> ") {
                Ok(line) => match self.line(&line) {
                    Ok(Next::Continue) => {}
                    Ok(Next::Exit) => return Ok(()),
                    Err(e) => eprintln!("edgevl: error: {e:#}"),
                },
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => return Ok(()),
                Err(e) => return Err(e).context("cannot read from the terminal"),
            }
        }
    }

    /// Scripted mode: one turn per stdin line; any error ends the run with a non-zero exit,
    /// naming the line.
    fn scripted(&mut self) -> anyhow::Result<()> {
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line.with_context(|| format!("cannot read line {} of stdin", i + 1))?;
            if let Next::Exit = self.line(&line).with_context(|| format!("line {} of stdin", i + 1))? {
                break;
            }
        }
        Ok(())
    }

    /// Handle one input line: a command or a user turn.
    fn line(&mut self, line: &str) -> anyhow::Result<Next> {
        let text = line.trim();
        if text.is_empty() {
            return Ok(Next::Continue);
        }
        let stdout = std::io::stdout();
        match text {
            "/exit" | "/quit" => return Ok(Next::Exit),
            "/reset" => {
                self.session.reset();
                self.start();
                eprintln!("edgevl: conversation reset");
            }
            "/stats" => {
                let json = serde_json::to_string(&self.session.stats())?;
                let mut out = stdout.lock();
                writeln!(out, "{json}")?;
                out.flush()?;
            }
            "/help" => eprintln!("edgevl: {HELP}"),
            cmd if cmd.starts_with("/image")
                && cmd.len() > 6
                && cmd[6..].starts_with(char::is_whitespace) =>
            {
                let info = self.session.add_image(typed_path(&cmd[6..]))?;
                eprintln!("edgevl: {}", describe(&info));
            }
            "/image" => eprintln!("edgevl: /image needs a file: /image PATH"),
            cmd if cmd.starts_with('/') => eprintln!("edgevl: unknown command {cmd}; {HELP}"),
            _ => {
                let mut out = stdout.lock();
                // A Ctrl-C that stopped the last answer must not count as this one's first.
                self.session.cancel_flag().store(false, Ordering::Relaxed);
                self.answering.store(true, Ordering::Relaxed);
                // Bars only while the turn runs, so none is drawn over the line being typed (an image encoded
                // ahead while the user typed shows its bar from where its encoding has got to).
                self.session.set_progress(crate::progress_bar::on_terminal());
                let stats = self.session.ask(text, self.args.gen.n_predict, &mut self.sampler, |piece| {
                    out.write_all(piece.as_bytes()).and_then(|_| out.flush()).is_ok()
                });
                self.session.set_progress(None);
                self.answering.store(false, Ordering::Relaxed);
                let stats = stats?;
                writeln!(out)?;
                out.flush()?;
                match stats.finish {
                    Finish::Cancelled => eprintln!("edgevl: answer stopped"),
                    Finish::ContextFull => {
                        eprintln!("edgevl: the context is full; /reset to start a new conversation")
                    }
                    Finish::Eog | Finish::Length => {}
                }
                eprintln!("edgevl: {}", summary(&stats));
            }
        }
        Ok(Next::Continue)
    }
}

/// A path as typed or dropped on a terminal: a file that exists as typed is itself (a name with
/// a backslash in it, a Windows path); else one pair of surrounding quotes removed, else
/// backslash escapes (`my\ pic.png`) undone; a leading `~/` is the home folder.
fn typed_path(text: &str) -> std::path::PathBuf {
    let text = text.trim();
    if std::path::Path::new(text).exists() {
        return text.into();
    }
    let quoted = ['\'', '"'].iter().find_map(|&q| text.strip_prefix(q)?.strip_suffix(q));
    let plain = match quoted {
        Some(inner) => inner.to_string(),
        None => {
            let mut out = String::with_capacity(text.len());
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().unwrap_or(c) } else { c });
            }
            out
        }
    };
    match (plain.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => plain.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::typed_path;
    use std::path::{Path, PathBuf};

    #[test]
    fn dropped_and_quoted_paths_name_the_file() {
        assert_eq!(typed_path(" 'my pic.png' "), Path::new("my pic.png"));
        assert_eq!(typed_path("\"my pic.png\""), Path::new("my pic.png"));
        assert_eq!(typed_path("my\\ pic\\(1\\).png"), Path::new("my pic(1).png"));
        assert_eq!(typed_path("/tmp/a.png"), Path::new("/tmp/a.png"));
        assert_eq!(typed_path("'half.png"), Path::new("'half.png"));
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
        assert_eq!(typed_path("~/a b.png"), home.join("a b.png"));
        assert_eq!(typed_path("'~/a.png'"), home.join("a.png"));
        // A file whose name holds a backslash, typed as it is.
        let dir = std::env::temp_dir().join(format!("edgevl-typed-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let odd = dir.join("a\\b.png");
        std::fs::write(&odd, b"x").unwrap();
        assert_eq!(typed_path(odd.to_str().unwrap()), odd);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
