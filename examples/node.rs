//! One node of a cluster per process, over TCP.
//!
//! ```text
//! cargo run --example node -- --id 1 --listen 127.0.0.1:4701 \
//!     --peer 2=127.0.0.1:4702 --peer 3=127.0.0.1:4703
//! ```
//!
//! Options: `--id N` and `--listen ADDR` (required), `--peer ID=ADDR`
//! (repeatable: every other voter), `--cluster N` (default 1), `--secret S`
//! (a shared secret), `--data DIR` (keep the log in a durable `FileStore`
//! there; without it the log lives in memory, so a restarted node starts
//! empty and receives everything again).
//!
//! Each line read from stdin is proposed. The node prints, one line each:
//! `proposal committed index=I epoch=E`, `proposal refused: ...` (on a node
//! that does not lead, with the leader to ask), every committed term as
//! `applied index=I epoch=E content=...`, and every status change as
//! `status from=... to=... epoch=E`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hookraft::{
    Config, Configuration, Epoch, FileStore, FileStoreOptions, Hook, LogStore, MemStore, Node,
    NodeId, ProposeError, Status, TcpOptions, TcpTransport, Term,
};

/// What the command line asked for.
struct Args {
    id: u64,
    listen: SocketAddr,
    peers: Vec<(u64, SocketAddr)>,
    cluster: u64,
    secret: Option<String>,
    data: Option<PathBuf>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut id, mut listen, mut peers, mut cluster, mut secret) = (None, None, vec![], 1, None);
    let mut data = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--id" => id = Some(value()?.parse().map_err(|e| format!("--id: {e}"))?),
            "--listen" => listen = Some(parse_addr(&value()?)?),
            "--peer" => peers.push(parse_peer(&value()?)?),
            "--cluster" => cluster = value()?.parse().map_err(|e| format!("--cluster: {e}"))?,
            "--secret" => secret = Some(value()?),
            "--data" => data = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Args {
        id: id.ok_or("--id is required")?,
        listen: listen.ok_or("--listen is required")?,
        peers,
        cluster,
        secret,
        data,
    })
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("bad address {s}: {e}"))
}

fn parse_peer(s: &str) -> Result<(u64, SocketAddr), String> {
    let (id, addr) = s.split_once('=').ok_or(format!("--peer {s}: expected ID=ADDR"))?;
    let id = id.parse().map_err(|e| format!("--peer {s}: {e}"))?;
    Ok((id, parse_addr(addr)?))
}

/// Prints what the application sees.
struct Printer;

impl Hook for Printer {
    fn apply_term(&self, term: &Term) {
        if let Some(content) = term.content() {
            println!(
                "applied index={} epoch={} content={}",
                term.index,
                term.epoch,
                String::from_utf8_lossy(content)
            );
        }
    }

    fn switch_status(&self, from: Status, to: Status, epoch: Epoch) {
        println!("status from={from} to={to} epoch={epoch}");
    }
}

fn start(args: &Args) -> Result<Node, String> {
    let mut options = TcpOptions::new(args.listen, args.cluster);
    for &(id, addr) in &args.peers {
        options = options.peer(id, addr);
    }
    options.secret = args.secret.as_ref().map(|s| s.as_bytes().to_vec());
    let transport = TcpTransport::bind(options).map_err(|e| e.to_string())?;

    let voters = args.peers.iter().map(|&(id, addr)| (id, addr.to_string()));
    let initial =
        Configuration::voters(voters).with(args.id, args.listen.to_string(), hookraft::Role::Voter);
    let config = Config::new(args.id, initial);
    let store: Box<dyn LogStore> = match &args.data {
        Some(dir) => {
            Box::new(FileStore::open(dir, FileStoreOptions::default()).map_err(|e| e.to_string())?)
        }
        None => Box::new(MemStore::new()),
    };
    Node::start(config, transport, store, Printer).map_err(|e| e.to_string())
}

/// Proposes `line` and prints what became of it.
fn propose(node: &Node, line: String) {
    match node.propose(line.into_bytes()) {
        Ok(p) => match p.wait_timeout(Duration::from_secs(10)) {
            Ok((index, epoch)) => println!("proposal committed index={index} epoch={epoch}"),
            Err(e) => println!("proposal failed: {e}"),
        },
        Err(ProposeError::NotLeader { leader }) => {
            let hint = leader.map_or("unknown".to_string(), |NodeId(l)| l.to_string());
            println!("proposal refused: not the leader, leader={hint}");
        }
        Err(e) => println!("proposal refused: {e}"),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("node: {e}");
            return ExitCode::from(2);
        }
    };
    let node = match start(&args) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("node {}: could not start: {e}", args.id);
            return ExitCode::FAILURE;
        }
    };
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) if !l.is_empty() => propose(&node, l),
            Ok(_) => {}
            Err(_) => break,
        }
    }

    // Without input the node goes on serving the cluster until killed.
    loop {
        std::thread::park();
    }
}
