use img2prompt::{Backend, IndexModels, OpenOptions, Predictor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Backend::default().device()?; // flex; `wgpu` and others are cargo features
    // An index from `img2prompt index build` (+ `head train`) and the CLIP checkpoint it was
    // built with (a directory in Hugging Face layout; its fingerprint is checked).
    let models = IndexModels::clip("models/clip-vit-base-patch32");
    let predictor = Predictor::open("my-index", &models, &OpenOptions::default(), &device)?;
    let image = img2prompt::decode_image_file("photo.jpg")?;
    let prediction = predictor.predict(&image)?;
    println!("{}", prediction.prompt);
    for n in prediction.neighbours.iter().take(5) {
        println!("{:.3} {:.3} {}", n.score, n.weight, n.prompt);
    }
    Ok(())
}
