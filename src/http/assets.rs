//! The dashboard's files, embedded in the binary: no CDN, nothing fetched at run time.
//!
//! `vendor/` holds uPlot 1.6.32 (MIT) as published on the npm registry, with its licence.

/// One embedded file.
pub struct Asset {
    /// Path under `/assets/`.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Contents.
    pub body: &'static [u8],
}

/// The dashboard page (`GET /`).
pub const INDEX_HTML: &str = include_str!("assets/index.html");

/// Files served under `/assets/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        path: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
    Asset {
        path: "vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/vendor/uPlot.min.css"),
    },
    Asset {
        path: "vendor/uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("assets/vendor/uPlot.LICENSE"),
    },
];

/// The embedded file at `path` (relative to `/assets/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
