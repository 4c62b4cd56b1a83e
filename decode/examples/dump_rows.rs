// Debug helper: writes sampled rows of a video as PPM files into a folder.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let opts = vidfeat_decode::DecodeOptions { size: Some((224, 224)), max_frames: Some(3), ..Default::default() };
    let r = vidfeat_decode::decode_file(std::path::Path::new(&a[1]), &opts, |f| {
        let mut d = format!("P6\n{} {}\n255\n", f.width, f.height).into_bytes();
        d.extend_from_slice(&f.rgb);
        std::fs::write(format!("{}/row{}.ppm", a[2], f.index), d).unwrap();
        println!("row {} t={} src_pts={} src_frame={}", f.index, f.time, f.source_pts, f.source_frame);
    });
    println!("{r:?}");
}
