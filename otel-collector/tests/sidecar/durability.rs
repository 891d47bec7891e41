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

/// One export; an error when the collector is down or refuses.
async fn export(port: u16, body: Vec<u8>) -> Result<(), String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    grpc.unary(
        tonic::Request::new(bytes::Bytes::from(body)),
        http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
        otel_export::RawCodec,
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn gateway_yaml(grpc: u16, metrics: u16, sink: u16, storage: &std::path::Path, queue_size: usize) -> String {
    format!(
        r#"
extensions:
  file_storage:
    directory: {}
    create_directory: true
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
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
            match rt.block_on(export(port, body)) {
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
    let want: HashSet<String> = acked.iter().map(|n| trace_hex(*n)).collect();
    let mut missing = want.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    while Instant::now() < deadline {
        got = read_file_export(&sink_file);
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
    // Duplicates are possible only around a crash, and bounded.
    let delivered: usize = want.iter().map(|t| got[t].len()).sum();
    let duplicates = delivered - 5 * want.len();
    assert!(
        duplicates <= 5 * want.len() / 2,
        "{duplicates} duplicate spans for {} traces",
        want.len()
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

#[test]
fn a_backend_outage_is_ridden_out_on_disk() {
    let dir = scratch("durability-outage");
    let storage = dir.join("storage");
    let sink_port = free_port("127.0.0.1");
    let (grpc, metrics) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let yaml = gateway_yaml(grpc, metrics, sink_port, &storage, 400);
    let _gw = collector("outage-gateway", &dir, &yaml, "127.0.0.1", &[grpc, metrics]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let next = AtomicU64::new(0);
    // The backend is down: requests are acknowledged and queued on disk.
    let mut acked = Vec::new();
    let mut refused = 0;
    for _ in 0..600 {
        let first = next.load(Ordering::Relaxed) + 1;
        let body = load_request(&next, 2);
        match rt.block_on(export(grpc, body)) {
            Ok(()) => acked.extend(first..=next.load(Ordering::Relaxed)),
            Err(e) => {
                assert!(e.contains("persistent sending queue is full"), "{e}");
                refused += 1;
            }
        }
    }
    // The bound: 400 requests queued, the rest refused with a retryable status.
    assert_eq!(acked.len(), 800, "acknowledged traces");
    assert_eq!(refused, 200);
    let text = scrape(metrics);
    assert_eq!(metric(&text, "otelcol_exporter_queue_size", &[]), 400.0);
    assert!(metric(&text, "otelcol_exporter_queue_storage_bytes", &[]) > 100_000.0);
    assert_eq!(metric(&text, "otelcol_exporter_enqueue_failed_spans_total", &[]), 0.0);
    // The backend comes back: everything queued is delivered.
    std::thread::sleep(Duration::from_secs(1));
    let sink_yaml = format!(
        "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: 127.0.0.1:{sink_port}}}}}}}}}\n\
         exporters: {{file: {{path: {}}}}}\n\
         service: {{pipelines: {{traces: {{receivers: [otlp], exporters: [file]}}}}}}\n",
        dir.join("outage-sink.jsonl").display()
    );
    let _sink = collector("outage-sink", &dir, &sink_yaml, "127.0.0.1", &[sink_port]);
    let want: HashSet<String> = acked.iter().map(|n| trace_hex(*n)).collect();
    eventually("the queued traces delivered", Duration::from_secs(60), || {
        let got = read_file_export(&dir.join("outage-sink.jsonl"));
        want.iter().all(|t| got.get(t).is_some_and(|s| s.len() >= 5))
    });
    eventually("the queue empty", Duration::from_secs(10), || {
        metric(&scrape(metrics), "otelcol_exporter_queue_size", &[]) == 0.0
    });
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
            rt.block_on(export(grpc, load_request(&next, 2))).unwrap();
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
        r#"
extensions:
  file_storage: {{directory: {}, create_directory: true}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
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
        storage.display()
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
    let want: HashSet<String> = acked.iter().map(|n| trace_hex(*n)).collect();
    let mut missing = want.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let got = read_file_export(&sink_file);
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
        match rt.block_on(export(grpc, load_request(&next, 5))) {
            Ok(()) => ok += 1,
            Err(e) if e.contains("disk full") => disk += 1,
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert!(disk >= 1, "no write failed ({ok} accepted)");
    assert!(ok >= 1, "{ok} accepted, {disk} refused");
    // After a failed write new data is refused for a second, then taken again.
    std::thread::sleep(Duration::from_millis(1200));
    rt.block_on(export(grpc, load_request(&next, 1))).unwrap();
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
