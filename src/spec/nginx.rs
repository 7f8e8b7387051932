//! Nginx sites from the managed repo (`nginx/`): the values a site may hold, the model, the
//! reader and the renderer. Pure code: nothing here writes a file on the host or starts Nginx.

pub mod values;
