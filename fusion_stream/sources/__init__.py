"""Real sensor sources: recordings (pcap, image folders, video, WAV, detection lists, KITTI) and
live devices (UDP, cameras, sound cards), each turning its input into fusion_stream messages.

Sources are plain iterators or small classes with no sockets of their own (live UDP aside), so
nodes stay thin and tests feed them files directly. Decoders come from maintained libraries
(velodyne-decoder, ouster-sdk, OpenCV) installed as optional extras; a missing one is a clear
error naming the extra to install."""
