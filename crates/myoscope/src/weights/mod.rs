//! Reading pretrained weights written by other frameworks, without running their code:
//! PyTorch `.pth`/`.pt` files ([`torch_file`]) through a pickle interpreter ([`pickle`]).
pub mod pickle;
pub mod torch_file;
