//! The server opens no network port: after launching a program and swapping an edit into it,
//! neither `hot-lsp --stdio` nor `hot-lsp watch` holds an IP socket (TCP, UDP or raw, v4 or
//! v6), nor a listening Unix socket. Its own Unix socket pairs (the async runtime's signal
//! wake-up) are private and connect nothing outside the process.

mod common;

use std::collections::HashSet;

use common::watch::Watch;
use common::{build_program, copy_fixture, file_uri, Client};
use serde_json::Value;

/// The inodes of the sockets among the open files of `pid`.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the server's fds");
    let mut inodes = HashSet::new();
    for fd in fds {
        let Ok(fd) = fd else { continue };
        // An fd closed since the listing has no link any more.
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.insert(inode.parse().expect("a socket inode"));
        }
    }
    inodes
}

/// (inode, line) of every socket in `/proc/<pid>/net/<table>` (the server's network
/// namespace). The inode is the 10th column of the IP tables; `unix` has it 7th.
fn table(pid: u32, name: &str) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/{name}")).unwrap_or_default();
    let column = if name == "unix" { 6 } else { 9 };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let inode = line.split_whitespace().nth(column)?.parse().ok()?;
            Some((inode, line.to_owned()))
        })
        .collect()
}

/// Fails if a socket of `pid` is an IP socket or a listening Unix socket, or is of a kind
/// none of the tables knows. Returns how many sockets were checked.
fn assert_no_network_port(pid: u32) -> usize {
    let sockets = socket_inodes(pid);
    for name in [
        "tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6",
    ] {
        for (inode, line) in table(pid, name) {
            assert!(
                !sockets.contains(&inode),
                "the server {pid} holds a {name} socket: {line}"
            );
        }
    }
    let unix = table(pid, "unix");
    for inode in &sockets {
        let Some((_, line)) = unix.iter().find(|(i, _)| i == inode) else {
            // Netlink and other families are neither ports nor Unix sockets: none expected.
            panic!("the server {pid} holds socket {inode}, which is no Unix socket");
        };
        // Columns: Num RefCount Protocol Flags Type St Inode [Path]; flag 0x10000 is
        // __SO_ACCEPTCON, a listening socket.
        let flags = line
            .split_whitespace()
            .nth(3)
            .and_then(|f| u32::from_str_radix(f, 16).ok())
            .expect("unix socket flags");
        assert_eq!(
            flags & 0x10000,
            0,
            "the server {pid} listens on a Unix socket: {line}"
        );
    }
    sockets.len()
}

#[test]
fn the_language_server_opens_no_network_port() {
    let (_dir, root) = copy_fixture("counter");
    build_program(&root);
    let mut client = Client::start();
    client.initialize(Some(&root), Value::Null);
    let workspace = file_uri(&root);
    client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && params["state"] == "running"
    });
    let main_c = root.join("main.c");
    let text = std::fs::read_to_string(&main_c).expect("read main.c");
    std::fs::write(&main_c, text.replacen("return x * 1;", "return x * 2;", 1))
        .expect("write main.c");
    client.did_save(&main_c);
    client.wait_notification("hot-lsp/status", |params| {
        params["workspace"] == workspace && params["lastSwap"]["seq"] == 1
    });
    let checked = assert_no_network_port(client.pid());
    eprintln!("hot-lsp --stdio: {checked} socket(s), all private Unix sockets");
}

#[test]
fn watch_opens_no_network_port() {
    let (_dir, root) = copy_fixture("counter");
    build_program(&root);
    let mut watch = Watch::start(&root);
    watch.output("value=10");
    let main_c = root.join("main.c");
    let text = std::fs::read_to_string(&main_c).expect("read main.c");
    std::fs::write(&main_c, text.replacen("return x * 1;", "return x * 2;", 1))
        .expect("write main.c");
    watch.wait("swap", |event| event["event"] == "swap");
    let checked = assert_no_network_port(watch.pid());
    eprintln!("hot-lsp watch: {checked} socket(s), all private Unix sockets");
}

/// The check sees what it looks for: a process holding a TCP listener fails it.
#[test]
fn the_check_finds_a_listening_tcp_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a TCP listener");
    let found = std::panic::catch_unwind(|| assert_no_network_port(std::process::id()));
    let message = match found {
        Ok(checked) => panic!("{checked} socket(s) passed with a TCP listener open"),
        Err(panic) => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(message.contains("tcp socket"), "{message}");
    drop(listener);
}
