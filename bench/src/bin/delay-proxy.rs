//! delay-proxy UPSTREAM_HOST:PORT ONE_WAY_MS: prints the port it listens on.
//! Forwards TCP with a fixed one-way delay each way (RTT = 2 x ONE_WAY_MS).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: delay-proxy UPSTREAM_HOST:PORT ONE_WAY_MS");
        std::process::exit(2);
    }
    let upstream = args[1].parse().expect("UPSTREAM_HOST:PORT");
    let ms: u64 = args[2].parse().expect("ONE_WAY_MS");
    let p = herald_bench::delay_proxy::DelayProxy::start(upstream, std::time::Duration::from_millis(ms));
    println!("{}", p.port);
    loop {
        std::thread::park();
    }
}
