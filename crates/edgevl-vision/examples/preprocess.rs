//! Loads an image, plans it with each strategy and renders the normalised tiles, printing timings:
//! `cargo run --release -p edgevl-vision --example preprocess -- photo.jpg`.

use std::time::Instant;

use edgevl_vision::{load_image, make_tiles, LoadLimits, Preprocess, Strategy, TilingParams};

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: preprocess IMAGE");
        std::process::exit(2);
    };
    let t = Instant::now();
    let image = match load_image(path.as_ref(), &LoadLimits::default()) {
        Ok(image) => image,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("decoded {} in {:.1} ms", image.size(), t.elapsed().as_secs_f64() * 1e3);
    for s in Strategy::ALL {
        let t = Instant::now();
        let result = s
            .plan(image.size(), &TilingParams::default())
            .and_then(|plan| make_tiles(&image, &plan, &Preprocess::BLUELM).map(|b| (plan, b)));
        match result {
            Ok((plan, batch)) => println!(
                "{:<10} grid {} -> tiles {:?} in {:.1} ms",
                s.name(),
                plan.grid,
                batch.shape(),
                t.elapsed().as_secs_f64() * 1e3
            ),
            Err(e) => eprintln!("{s}: error: {e}"),
        }
    }
}
