//! A collector that loses nothing it acknowledged: a persistent sending
//! queue under steady load, the collector killed with SIGKILL at random
//! moments and restarted on the same directory; a backend that goes away
//! for a while; a damaged journal. Real processes, real kills.

use crate::proc::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The hex trace id `load_request` gives trace `n`.
fn trace_hex(n: u64) -> String {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    t[8..].copy_from_slice(&n.to_be_bytes());
    t.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits (up to a minute) until every trace in `acked` is in `sink` with
/// its five spans; the spans delivered for them (duplicates included).
fn wait_whole(sink: &std::path::Path, acked: &[u64]) -> usize {
    let want: HashSet<String> = acked.iter().map(|n| trace_hex(*n)).collect();
    let mut missing = want.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    while Instant::now() < deadline {
        got = read_file_export(sink);
        missing = want
            .iter()
            .filter(|t| got.get(*t).is_none_or(|s| s.iter().collect::<HashSet<_>>().len() < 5))
            .count();
        if missing == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged traces never arrived whole",
        want.len()
    );
    want.iter().map(|t| got[t].len()).sum()
}

fn gateway_yaml(grpc: u16, metrics: u16, sink: u16, storage: &std::path::Path, queue_size: usize) -> String {
    format!(
        r#"{}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
    sending_queue: {{storage: file_storage, queue_size: {queue_size}}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 120s}}
service:
  extensions: [file_storage]
  telemetry:
    metrics: {{address: 127.0.0.1:{metrics}}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#,
        storage_and_receiver(storage, grpc)
    )
}

/// The `file_storage` extension in `storage` and an OTLP/gRPC receiver on `grpc`.
fn storage_and_receiver(storage: &std::path::Path, grpc: u16) -> String {
    format!(
        "extensions:\n  file_storage: {{directory: {}, create_directory: true}}\n\
         receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: 127.0.0.1:{grpc}}}",
        storage.display()
    )
}

/// Sends load until `stop`, five traces a request, recording the traces of
/// every request the collector acknowledged.
fn load(
    port: u16,
    stop: Arc<AtomicBool>,
    acked: Arc<std::sync::Mutex<Vec<u64>>>,
    next: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut refused = 0;
        while !stop.load(Ordering::Relaxed) {
            let first = next.load(Ordering::Relaxed) + 1;
            let body = load_request(&next, 5);
            let last = next.load(Ordering::Relaxed);
            match rt.block_on(try_grpc_export(port, body)) {
                Ok(()) => acked.lock().unwrap().extend(first..=last),
                Err(_) => {
                    refused += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        refused
    })
}

#[test]
fn acknowledged_spans_survive_kill_9_and_restarts() {
    let dir = scratch("durability-kill");
    let storage = dir.join("storage");
    let (_sink, sink_port, sink_file) = file_sink(&dir, "kill-sink");
    let (grpc, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let yaml = gateway_yaml(grpc, metrics, sink_port, &storage, 100_000);
    let mut gw = collector("kill-gateway", &dir, &yaml, "127.0.0.1", &[grpc]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = Arc::new(AtomicU64::new(0));
    let sender = load(grpc, stop.clone(), acked.clone(), next.clone());
    // Kill -9 at moments spread over the load, three times, restarting on
    // the same directory each time.
    let mut kills = 0;
    for pause in [700u64, 450, 900] {
        std::thread::sleep(Duration::from_millis(pause));
        gw.signal("KILL");
        gw.wait_exit(Duration::from_secs(5));
        kills += 1;
        gw = collector(&format!("kill-gateway-{kills}"), &dir, &yaml, "127.0.0.1", &[grpc]);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let refused = sender.join().unwrap();
    let acked: Vec<u64> = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too little load: {} traces acknowledged",
        acked.len()
    );
    // Every acknowledged trace reaches the sink whole.
    let delivered = wait_whole(&sink_file, &acked);
    // Duplicates are possible only around a crash, and bounded.
    let duplicates = delivered - 5 * acked.len();
    assert!(
        duplicates <= 5 * acked.len() / 2,
        "{duplicates} duplicate spans for {} traces",
        acked.len()
    );
    // The replays are counted.
    let text = scrape(metrics);
    let replayed = metric(&text, "otelcol_exporter_queue_replayed_spans_total", &[]);
    eprintln!(
        "acknowledged traces: {}, refused requests: {refused}, duplicate spans: {duplicates}, replayed in the last start: {replayed}",
        acked.len()
    );
    drop(gw);
}

/// A `file` exporter collector on `port` writing to `dir/<name>.jsonl`.
fn sink_at(dir: &std::path::Path, name: &str, port: u16) -> (Proc, std::path::PathBuf) {
    let path = dir.join(format!("{name}.jsonl"));
    let yaml = format!(
        "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: 127.0.0.1:{port}}}}}}}}}\n\
         exporters: {{file: {{path: {}}}}}\n\
         service: {{pipelines: {{traces: {{receivers: [otlp], exporters: [file]}}}}}}\n",
        path.display()
    );
    (collector(name, dir, &yaml, "127.0.0.1", &[port]), path)
}

/// Resident memory now (VmRSS), bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Sends `traces`-trace requests until `acked` traces are acknowledged or
/// `attempts` requests were made: (acknowledged trace numbers, refusals).
fn send(
    rt: &tokio::runtime::Runtime,
    port: u16,
    next: &AtomicU64,
    traces: usize,
    attempts: usize,
) -> (Vec<u64>, Vec<String>) {
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..attempts {
        let first = next.load(Ordering::Relaxed) + 1;
        let body = load_request(next, traces);
        match rt.block_on(try_grpc_export(port, body)) {
            Ok(()) => acked.extend(first..=next.load(Ordering::Relaxed)),
            Err(e) => refused.push(e),
        }
    }
    (acked, refused)
}

/// The backend is down for 30 s under steady load: everything is
/// acknowledged and kept on disk (not in memory), and delivered after.
#[test]
fn a_backend_outage_is_ridden_out_on_disk() {
    let dir = scratch("durability-outage");
    let storage = dir.join("storage");
    let sink_port = free_port("127.0.0.1");
    let (grpc, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let yaml = gateway_yaml(grpc, metrics, sink_port, &storage, 100_000);
    let gw = collector("outage-gateway", &dir, &yaml, "127.0.0.1", &[grpc, metrics]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let next = AtomicU64::new(0);
    // Warm up, then measure memory across 30 s of load at 40 requests (4000 spans) a second.
    let (mut acked, refused) = send(&rt, grpc, &next, 20, 40);
    assert!(refused.is_empty(), "{refused:?}");
    let before = rss(gw.pid());
    let started = Instant::now();
    let mut i = 0u32;
    while started.elapsed() < Duration::from_secs(30) {
        let (a, refused) = send(&rt, grpc, &next, 20, 1);
        assert!(refused.is_empty(), "{refused:?}");
        acked.extend(a);
        i += 1;
        let due = started + Duration::from_millis(25 * u64::from(i));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let grown = rss(gw.pid()).saturating_sub(before);
    let text = scrape(metrics);
    let queued_spans = 5.0 * acked.len() as f64;
    let on_disk = metric(&text, "otelcol_exporter_queue_storage_bytes", &[]);
    eprintln!("outage: {queued_spans} spans queued, {on_disk} bytes on disk, resident memory +{grown} bytes");
    assert!(on_disk > 1_000_000.0, "{on_disk} bytes on disk");
    // Each queued span arrived as ~200 bytes of protobuf; memory holds only
    // where each request is on disk.
    assert!(
        (grown as f64) < queued_spans * 20.0,
        "resident memory grew {grown} bytes for {queued_spans} queued spans"
    );
    assert_eq!(metric(&text, "otelcol_exporter_enqueue_failed_spans_total", &[]), 0.0);
    // The backend comes back: everything queued is delivered.
    let (_sink, sink_file) = sink_at(&dir, "outage-sink", sink_port);
    wait_whole(&sink_file, &acked);
    eventually("the queue empty", Duration::from_secs(10), || {
        metric(&scrape(metrics), "otelcol_exporter_queue_size", &[]) == 0.0
    });
}

/// At `queue_size` (requests, or bytes with `sizer: bytes`) receivers refuse
/// with a retryable status, nothing is dropped; with `blocking: true` they
/// wait for room instead.
#[test]
fn a_full_persistent_queue_refuses_or_blocks() {
    let dir = scratch("durability-bound");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let next = AtomicU64::new(0);
    for (name, queue, blocking) in [
        ("requests", "queue_size: 400", false),
        ("bytes", "queue_size: 30000, sizer: bytes", false),
        ("blocking", "queue_size: 50, blocking: true", true),
    ] {
        let storage = dir.join(format!("storage-{name}"));
        let sink_port = free_port("127.0.0.1");
        let (grpc, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        let yaml = gateway_yaml(grpc, metrics, sink_port, &storage, 1).replace("queue_size: 1", queue);
        let _gw = collector(&format!("bound-{name}"), &dir, &yaml, "127.0.0.1", &[grpc, metrics]);
        if blocking {
            // The backend comes up while requests past the bound wait.
            let dir = dir.clone();
            let sink = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                sink_at(&dir, "bound-sink", sink_port)
            });
            let started = Instant::now();
            let (acked, refused) = send(&rt, grpc, &next, 2, 80);
            assert!(refused.is_empty(), "{refused:?}");
            assert_eq!(acked.len(), 160);
            assert!(
                started.elapsed() >= Duration::from_millis(1500),
                "{:?}",
                started.elapsed()
            );
            let (_sink, file) = sink.join().unwrap();
            wait_whole(&file, &acked);
            continue;
        }
        let (acked, refused) = send(&rt, grpc, &next, 2, 600);
        assert!(!refused.is_empty(), "{name}: nothing refused");
        for e in &refused {
            assert!(e.contains("persistent sending queue is full"), "{name}: {e}");
        }
        let text = scrape(metrics);
        let size = metric(&text, "otelcol_exporter_queue_size", &[]);
        match name {
            "requests" => {
                assert_eq!((acked.len(), refused.len()), (800, 200));
                assert_eq!(size, 400.0);
            }
            // Stored bytes: the bound, passed by at most the request that reached it.
            _ => assert!((30_000.0..31_000.0).contains(&size), "{size} bytes"),
        }
        assert_eq!(metric(&text, "otelcol_exporter_enqueue_failed_spans_total", &[]), 0.0);
    }
}

/// A `loadbalancing` exporter keeps each backend's queue on disk: killed
/// while its backend is down, it delivers after the restart.
#[test]
fn loadbalancing_backends_queue_on_disk() {
    let dir = scratch("durability-lb");
    let storage = dir.join("storage");
    let sink_port = free_port("127.0.0.1");
    let grpc = free_port("127.0.0.1");
    let yaml = format!(
        r#"{}
exporters:
  loadbalancing:
    protocol:
      otlp:
        tls: {{insecure: true}}
        sending_queue: {{storage: file_storage}}
        retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms}}
    resolver:
      static: {{hostnames: ["127.0.0.1:{sink_port}"]}}
service:
  extensions: [file_storage]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [loadbalancing]
"#,
        storage_and_receiver(&storage, grpc)
    );
    let mut lb = collector("lb-1", &dir, &yaml, "127.0.0.1", &[grpc]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let next = AtomicU64::new(0);
    let (acked, refused) = send(&rt, grpc, &next, 2, 30);
    assert!(refused.is_empty(), "{refused:?}");
    lb.signal("KILL");
    lb.wait_exit(Duration::from_secs(5));
    let (_sink, file) = sink_at(&dir, "lb-sink", sink_port);
    let _lb = collector("lb-2", &dir, &yaml, "127.0.0.1", &[grpc]);
    wait_whole(&file, &acked);
}

#[test]
fn a_damaged_journal_is_skipped_and_counted_and_a_bad_directory_is_a_clear_error() {
    let dir = scratch("durability-damage");
    let storage = dir.join("storage");
    let sink_port = free_port("127.0.0.1");
    let (grpc, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let yaml = gateway_yaml(grpc, metrics, sink_port, &storage, 100_000);
    {
        let mut gw = collector("damage-1", &dir, &yaml, "127.0.0.1", &[grpc]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let next = AtomicU64::new(0);
        for _ in 0..20 {
            rt.block_on(try_grpc_export(grpc, load_request(&next, 2))).unwrap();
        }
        gw.signal("KILL");
        gw.wait_exit(Duration::from_secs(5));
    }
    // Flip bytes in the middle of every segment and cut the last short.
    let journal = storage.join("exporter_otlp");
    let mut segments: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let mut damaged = false;
    for seg in &segments {
        let mut data = std::fs::read(seg).unwrap();
        if data.len() > 200 {
            let mid = data.len() / 2;
            data[mid] ^= 0x5a;
            data.truncate(data.len() - 7);
            std::fs::write(seg, &data).unwrap();
            damaged = true;
        }
    }
    assert!(damaged, "no segment to damage in {segments:?}");
    let gw = collector("damage-2", &dir, &yaml, "127.0.0.1", &[grpc, metrics]);
    let text = scrape(metrics);
    assert!(
        metric(&text, "otelcol_exporter_queue_skipped_records_total", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "otelcol_exporter_queue_replayed_spans_total", &[]) >= 10.0,
        "{text}"
    );
    assert!(gw.log_text().contains("damaged records"), "{}", gw.log_text());
    drop(gw);

    // A directory that is a file, or missing without create_directory: a clear error at start.
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let bad = yaml.replace(&storage.display().to_string(), &file.display().to_string());
    let config = dir.join("bad.yaml");
    std::fs::write(&config, &bad).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otel-collector"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("extensions.file_storage") && err.contains("not a directory"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Tail sampling with its buffer on disk, in front of a persistent queue:
/// traces held for `decision_wait` when the collector is killed are read
/// back and decided after the restart, whole.
#[test]
fn tail_sampling_decides_acknowledged_traces_after_kill_9() {
    let dir = scratch("durability-tail");
    let storage = dir.join("storage");
    let (_sink, sink_port, sink_file) = file_sink(&dir, "tail-sink");
    let (grpc, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let yaml = format!(
        r#"{}
processors:
  tail_sampling:
    decision_wait: 2s
    tail_storage: file_storage
    policies: [{{name: all, type: always_sample}}]
  batch: {{timeout: 200ms}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink_port}
    tls: {{insecure: true}}
    sending_queue: {{storage: file_storage}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms}}
service:
  extensions: [file_storage]
  telemetry:
    metrics: {{address: 127.0.0.1:{metrics}}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling, batch]
      exporters: [otlp]
"#,
        storage_and_receiver(&storage, grpc)
    );
    let mut gw = collector("tail-gateway", &dir, &yaml, "127.0.0.1", &[grpc]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = Arc::new(AtomicU64::new(0));
    let sender = load(grpc, stop.clone(), acked.clone(), next.clone());
    // Killed while traces wait out decision_wait (2 s): they exist only in
    // memory and in the journal.
    for (i, pause) in [1500u64, 2600, 1200].into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(pause));
        gw.signal("KILL");
        gw.wait_exit(Duration::from_secs(5));
        gw = collector(&format!("tail-gateway-{i}"), &dir, &yaml, "127.0.0.1", &[grpc, metrics]);
    }
    let replayed = metric(
        &scrape(metrics),
        "otelcol_processor_tail_sampling_replayed_spans_total",
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let acked: Vec<u64> = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "too little load: {}", acked.len());
    assert!(replayed > 0.0, "nothing was pending at the last kill");
    wait_whole(&sink_file, &acked);
    eprintln!(
        "acknowledged traces: {}, replayed spans at the last start: {replayed}",
        acked.len()
    );
}

/// Writes that fail (here a file-size limit, as a full disk does) are
/// refused upstream with a retryable status and counted; the collector
/// neither dies nor panics, and takes data again when writes succeed.
#[test]
fn failing_writes_are_refused_upstream_and_counted() {
    let dir = scratch("durability-full");
    let storage = dir.join("storage");
    let sink_port = free_port("127.0.0.1");
    let (grpc, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let yaml = gateway_yaml(grpc, metrics, sink_port, &storage, 100_000);
    let config = dir.join("full.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let log = dir.join("full.log");
    // Files of this process may not grow past 200 kB.
    let child = std::process::Command::new("prlimit")
        .arg("--fsize=200000")
        .arg(env!("CARGO_BIN_EXE_otel-collector"))
        .arg("--config")
        .arg(&config)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prlimit (util-linux)");
    let mut gw = Proc {
        child,
        name: "full".into(),
        log,
    };
    wait_for_port("127.0.0.1", grpc, "the collector");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let next = AtomicU64::new(0);
    let (mut ok, mut disk) = (0, 0);
    for _ in 0..400 {
        match rt.block_on(try_grpc_export(grpc, load_request(&next, 5))) {
            Ok(()) => ok += 1,
            Err(e) if e.contains("disk full") => disk += 1,
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert!(disk >= 1, "no write failed ({ok} accepted)");
    assert!(ok >= 1, "{ok} accepted, {disk} refused");
    // After a failed write new data is refused for a second, then taken again.
    std::thread::sleep(Duration::from_millis(1200));
    rt.block_on(try_grpc_export(grpc, load_request(&next, 1))).unwrap();
    assert!(gw.alive(), "{}", gw.log_text());
    let text = scrape(metrics);
    assert!(
        metric(&text, "otelcol_exporter_enqueue_failed_spans_total", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "otelcol_receiver_refused_spans_total", &[]) >= 1.0,
        "{text}"
    );
    let log = gw.log_text();
    assert!(log.contains("cannot write to the persistent queue"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
