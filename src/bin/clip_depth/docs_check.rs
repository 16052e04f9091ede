//! The documentation's command lines against the real interfaces: every
//! `clip_depth` command shown in README.md and docs/*.md parses with this
//! CLI, every launch argument a `ros2 launch` line gives is one the launch
//! file declares, and every node parameter a command sets is one of
//! config/clip_depth.yaml (which the node's own tests hold to its declared
//! parameters). Shown forms: `[optional]` parts are taken, `a|b` takes the
//! first choice, `...` is left out.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::Cli;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/, with their names.
fn documents() -> Vec<(String, String)> {
    let mut paths = vec![root().join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    paths.extend(pages);
    paths
        .into_iter()
        .map(|p| (p.strip_prefix(root()).unwrap().display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

/// Where a command is shown: a fenced block's line is a whole command; an
/// inline span in prose may name a command without its required arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shown {
    Block,
    Inline,
}

/// Shell lines of fenced blocks (continuations joined, comments cut) and
/// inline code spans of prose (which may wrap), each with its line number.
fn shown_commands(text: &str) -> Vec<(usize, Shown, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut pending = String::new();
    let mut start = 0;
    // Prose: the open inline span, and the line it started on.
    let mut span: Option<(usize, String)> = None;
    // A fenced block is shell unless its info string says otherwise (text, yaml).
    let mut shell = false;
    for (i, line) in text.lines().enumerate() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            fenced = !fenced;
            shell = fenced && matches!(info.trim(), "" | "bash" | "sh" | "shell" | "console");
            span = None;
            continue;
        }
        if fenced && !shell {
            continue;
        }
        if fenced {
            let line = cut_comment(line);
            if pending.is_empty() {
                start = i + 1;
            }
            if let Some(head) = line.trim_end().strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            out.push((start, Shown::Block, std::mem::take(&mut pending)));
        } else if line.trim().is_empty() {
            span = None;
        } else {
            for (k, piece) in line.split('`').enumerate() {
                if k > 0 {
                    // A backtick: close the open span, or open one.
                    match span.take() {
                        Some((at, text)) => out.push((at, Shown::Inline, text)),
                        None => span = Some((i + 1, String::new())),
                    }
                }
                if let Some((_, text)) = span.as_mut() {
                    text.push_str(piece);
                }
            }
            if let Some((_, text)) = span.as_mut() {
                text.push(' ');
            }
        }
    }
    out
}

/// The line without a `#` comment (one that starts a word, outside quotes).
fn cut_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

/// Shell words (single and double quotes, no expansion).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let (mut single, mut double) = (false, false);
    for c in line.chars() {
        match c {
            '\'' if !double => {
                single = !single;
                in_word = true;
            }
            '"' if !single => {
                double = !double;
                in_word = true;
            }
            c if c.is_whitespace() && !single && !double => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// The arguments of each `clip_depth` invocation on a line, as shown
/// forms resolve: `[x]` -> x, `a|b` -> a, `...` dropped.
fn clip_depth_invocations(line: &str) -> Vec<Vec<String>> {
    let words = words(line);
    let mut found = Vec::new();
    for (i, w) in words.iter().enumerate() {
        // `/clip_depth` alone is the node's name (`ros2 param set /clip_depth ...`).
        let program = Path::new(w).file_name().is_some_and(|n| n == "clip_depth") && w != "/clip_depth";
        if program && i + 1 < words.len() {
            let mut args = vec!["clip_depth".to_string()];
            for a in &words[i + 1..] {
                if matches!(a.as_str(), "&&" | "||" | ";" | "|" | ">" | "2>" | "&") {
                    break;
                }
                let a = a.trim_start_matches('[').trim_end_matches(']');
                let a = if a.starts_with('-') || !a.contains('|') { a } else { a.split('|').next().unwrap() };
                if a.is_empty() || a == "..." {
                    continue;
                }
                args.push(a.to_string());
            }
            found.push(args);
        }
    }
    found
}

#[test]
fn every_clip_depth_command_shown_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, text) in documents() {
        for (line_no, shown, line) in shown_commands(&text) {
            for args in clip_depth_invocations(&line) {
                // `clip_depth` alone names the program in prose.
                if args.len() < 2 {
                    continue;
                }
                checked += 1;
                if let Err(e) = Cli::try_parse_from(&args) {
                    // Prose may name a command (`clip_depth train`) without
                    // what it requires; a wrong name, flag or value fails.
                    use clap::error::ErrorKind::{DisplayHelpOnMissingArgumentOrSubcommand, MissingRequiredArgument, MissingSubcommand};
                    if shown == Shown::Inline
                        && matches!(e.kind(), MissingRequiredArgument | MissingSubcommand | DisplayHelpOnMissingArgumentOrSubcommand)
                    {
                        continue;
                    }
                    let first = e.to_string().lines().next().unwrap_or_default().to_string();
                    failures.push(format!("{name}:{line_no}: `{}`: {first}", args.join(" ")));
                }
            }
        }
    }
    assert!(checked >= 30, "found only {checked} clip_depth commands in the docs");
    assert!(failures.is_empty(), "{} of {checked} commands do not parse:\n{}", failures.len(), failures.join("\n"));
}

/// The launch file's declared arguments (its `_ARGUMENTS` table and
/// `params_file`).
fn launch_arguments() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("launch/clip_depth.launch.py")).unwrap();
    let table = &text[text.find("_ARGUMENTS = [").expect("the launch file's _ARGUMENTS")..];
    let table = &table[..table.find("\n]").unwrap()];
    let mut names: Vec<String> = table
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("('"))
        .map(|l| l[..l.find('\'').unwrap()].to_string())
        .collect();
    assert!(text.contains("DeclareLaunchArgument(\n        'params_file'"), "params_file is declared");
    names.push("params_file".into());
    names
}

fn node_parameters() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("config/clip_depth.yaml")).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let params = &doc["/**"]["ros__parameters"];
    params.as_mapping().expect("ros__parameters").keys().map(|k| k.as_str().unwrap().to_string()).collect()
}

#[test]
fn every_launch_argument_and_node_parameter_named_exists() {
    let launch = launch_arguments();
    let params = node_parameters();
    assert!(launch.len() >= 20 && params.len() >= 30, "{launch:?} {params:?}");
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, text) in documents() {
        for (line_no, _, line) in shown_commands(&text) {
            let words = words(&line);
            let at = format!("{name}:{line_no}");
            if let Some(i) = words.iter().position(|w| w == "clip_depth.launch.py") {
                for w in &words[i + 1..] {
                    if let Some((arg, _)) = w.split_once(":=") {
                        checked += 1;
                        if !launch.contains(&arg.to_string()) {
                            failures.push(format!("{at}: launch argument {arg} is not declared"));
                        }
                    }
                }
            }
            // `ros2 param set /node NAME value`, `-p NAME:=value` (NAME may be CAMERA.NAME).
            let mut set = Vec::new();
            for (k, w) in words.iter().enumerate() {
                if w == "set" && k >= 2 && words[k - 1] == "param" && k + 2 < words.len() {
                    set.push(words[k + 2].clone());
                }
                if w == "-p" && k + 1 < words.len() {
                    if let Some((p, _)) = words[k + 1].split_once(":=") {
                        set.push(p.to_string());
                    }
                }
            }
            for p in set {
                checked += 1;
                let base = p.rsplit('.').next().unwrap();
                if !params.contains(&base.to_string()) {
                    failures.push(format!("{at}: node parameter {p} does not exist"));
                }
            }
        }
    }
    // The parameter and launch-argument tables of docs/node.md: exactly the declared sets.
    let node_page = std::fs::read_to_string(root().join("docs/node.md")).unwrap();
    let table = |header: &str| -> Vec<String> {
        let start = node_page.find(header).unwrap_or_else(|| panic!("docs/node.md has a table headed {header:?}"));
        node_page[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.split('`').nth(1).unwrap_or_default().to_string())
            .collect()
    };
    let mut documented = table("| parameter | default | live | what |");
    let mut declared = params.clone();
    documented.sort();
    declared.sort();
    assert_eq!(documented, declared, "docs/node.md's parameter table against config/clip_depth.yaml");
    let mut documented = table("| argument | default | what |");
    let mut declared = launch.clone();
    documented.sort();
    declared.sort();
    assert_eq!(documented, declared, "docs/node.md's launch argument table against the launch file");
    assert!(checked >= 10, "found only {checked} launch arguments and parameters in commands");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shown_forms_resolve_as_a_reader_would() {
    let found = clip_depth_invocations("target/release/clip_depth bench [--batch 1 4] [--device cpu|cuda:0] ... --json");
    assert_eq!(found, [vec!["clip_depth", "bench", "--batch", "1", "4", "--device", "cpu", "--json"]]);
    assert_eq!(cut_comment("a 'b # c' # d"), "a 'b # c' ");
    assert_eq!(words("-p bin_list:='[0.5, 1.5]' x"), ["-p", "bin_list:=[0.5, 1.5]", "x"]);
    let shown = shown_commands("Run `clip_depth eval --config\na.yaml` now.\n\n```bash\nclip_depth infer \\\n  --input x # note\n```\n");
    assert_eq!(shown, [(1, Shown::Inline, "clip_depth eval --config a.yaml".to_string()), (5, Shown::Block, "clip_depth infer    --input x ".to_string())]);
    // A command that does not parse is caught.
    assert!(Cli::try_parse_from(["clip_depth", "infer", "--no-such-flag"]).is_err());
}

/// Every relative link of the docs names a file that exists, and the
/// README stays one page (the topics live under docs/).
#[test]
fn links_resolve_and_the_readme_fits_on_a_page() {
    let mut broken = Vec::new();
    for (name, text) in documents() {
        let base = root().join(&name).parent().unwrap().to_path_buf();
        for piece in text.split("](").skip(1) {
            let target = &piece[..piece.find(')').unwrap_or(piece.len())];
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            if !base.join(file).exists() {
                broken.push(format!("{name}: {target}"));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.lines().count() <= 70, "README.md has {} lines: move topics to docs/", readme.lines().count());
}
