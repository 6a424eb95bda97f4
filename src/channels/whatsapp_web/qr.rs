//! The pairing QR as an SVG data URL, for `<img src>` (the seed's `qrUrl`).
use base64::{Engine as _, engine::general_purpose::STANDARD};
use qrcode::{EcLevel, QrCode, render::svg};

/// `data:image/svg+xml;base64,…` of `text` as a QR code; empty when it does not fit one.
pub fn svg_data_url(text: &str) -> String {
    let Ok(code) = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L) else {
        return String::new();
    };
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    format!("data:image/svg+xml;base64,{}", STANDARD.encode(image))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_qr_string_renders_as_an_svg_data_url() {
        let url = super::svg_data_url("2@abc,def,ghi,jkl,1");
        assert!(url.starts_with("data:image/svg+xml;base64,"));
        assert!(url.len() > 500);
    }
}
