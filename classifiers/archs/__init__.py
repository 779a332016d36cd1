"""Built-in architectures, one module per family; importing this package registers all of them."""

from classifiers.archs import cifar_f as cifar_f
from classifiers.archs import densenet as densenet
from classifiers.archs import fashion as fashion
from classifiers.archs import fashion_zheng as fashion_zheng
from classifiers.archs import googlenet as googlenet
from classifiers.archs import madry_wrn as madry_wrn
from classifiers.archs import mnist as mnist
from classifiers.archs import mobilenetv2 as mobilenetv2
from classifiers.archs import resnet as resnet
from classifiers.archs import resnet_cohen as resnet_cohen
from classifiers.archs import resnet_he as resnet_he
from classifiers.archs import squeezenet as squeezenet
from classifiers.archs import vgg as vgg
from classifiers.archs import wide_resnet as wide_resnet
