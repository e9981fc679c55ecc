//! Multi-page fluorescence TIFFs (inForm `component_data.tif`, Vectra `.qptiff`): pages or
//! samples as channels, channel names from the ImageDescription XML, per-channel normalisation,
//! and instance → semantic label masks.
