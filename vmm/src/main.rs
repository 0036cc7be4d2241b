fn main() {
    eprintln!("dmalab: not yet implemented");
    std::process::exit(2);
}
