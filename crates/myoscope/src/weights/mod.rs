//! Offline pretrained weights: read PyTorch `.pth`/`.pt` files (zip or legacy, through a pickle
//! interpreter that executes nothing), safetensors and TF.js files; map their keys explicitly
//! onto myoscope's layouts; keep them with their checksum and preprocessing in a local
//! registry; and prove them against PyTorch's logits. Nothing is ever downloaded.
pub mod channels;
pub mod fit;
pub mod keymap;
pub mod parity;
pub mod pickle;
pub mod preprocessing;
pub mod pretrained;
pub mod profile;
pub mod registry;
pub mod source;
pub mod tfjs;
pub mod torch_file;
