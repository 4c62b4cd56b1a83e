//! Prints the rows `decode_file` samples from a video: index, row time, source pts, source frame.
//! Usage: cargo run -p vidfeat-decode --example sample_times -- VIDEO [START END]
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut opts = vidfeat_decode::DecodeOptions { size: Some((64, 64)), max_frames: None, ..Default::default() };
    if a.len() == 4 {
        opts.window = Some((a[2].parse().unwrap(), a[3].parse().unwrap()));
    }
    let r = vidfeat_decode::decode_file(std::path::Path::new(&a[1]), &opts, |f| {
        println!("row {:4}  t={:8.3}  source_pts={:8.3}  source_frame={}", f.index, f.time, f.source_pts, f.source_frame)
    });
    println!("{r:#?}");
}
